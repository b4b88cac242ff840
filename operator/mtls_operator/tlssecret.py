"""The ``kubernetes.io/tls`` Secret the operator writes, built from a ``POST /sign`` answer, and
the ConfigMap that gives pod-certificate pods the same ``tls-policy.json`` and ``ca.crl``.

Functions over plain dicts (the API's JSON), with no I/O, so they are tested without a cluster.
All are pure but one: `merge_owners` changes the Secret dict it is given, in place, because
`kopf.append_owner_reference` (one reference per pod, none marked as controller: several pods
share one Secret, and only one owner may be the controller) works that way.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from mtls_ca import name_rules
from mtls_ca.tls_profiles import policy_bytes
from mtls_context.layout import CA, CERT, CRL, KEY, POLICY, federated_bundles
from mtls_operator.certs import crl_serials, federated_digest, sha256_hex
from mtls_operator.claims import Claim
from mtls_operator.marks import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CLAIM,
    ANNOTATION_NOT_AFTER,
    ANNOTATION_SERIAL,
    LABEL_MANAGED,
)

__all__ = [
    "ANNOTATION_BUNDLE",
    "ANNOTATION_CLAIM",
    "ANNOTATION_NOT_AFTER",
    "ANNOTATION_SERIAL",
    "LABEL_MANAGED",
    "POLICY_CONFIG_MAP",
    "Answer",
    "CAView",
    "decode_data",
    "merge_owners",
    "parse_answer",
    "policy_config_map",
    "refreshed_data",
    "secret_body",
    "trust_data",
    "view_from_status",
]

POLICY_CONFIG_MAP = "hello-mtls-tls-policy"
"""The ConfigMap, one per namespace, that a pod-certificate pod's projected volume reads
``tls-policy.json`` from (the kubelet writes the key and certificate, a ClusterTrustBundle
``ca.crt``)."""


@dataclass(frozen=True)
class CAView:
    """What the CA currently hands out; every managed Secret should match it."""

    intermediate_sha256: str
    bundle_pem: bytes
    bundle_sha256: str
    tls_policy: Mapping[str, Any]
    phase: str = "idle"
    trust_domain: str = name_rules.CLUSTER_DOMAIN
    crl_pem: bytes = b""
    """``GET /crl``: goes into every Secret as ``ca.crl`` (empty: the CA serves none)."""
    revoked_serials: frozenset[str] = frozenset()
    """The serials (hex) ``crl_pem`` lists: a Secret holding one is issued anew at once."""
    federated: Mapping[str, bytes] = field(default_factory=dict)
    """``federated-<trust domain>.crt`` to that trust domain's roots, beside ``ca.crt`` in every
    Secret (`mtls_operator.bundle_fetcher`); not the CA's: the operator fetches them."""

    @property
    def crl_sha256(self) -> str:
        return sha256_hex(self.crl_pem) if self.crl_pem else ""

    @property
    def federated_sha256(self) -> str:
        return federated_digest(self.federated)


@dataclass(frozen=True)
class Answer:
    """A ``POST /sign`` answer."""

    certificate: bytes
    ca: bytes
    tls_policy: Mapping[str, Any]
    serial: str
    not_after: str
    bundle_sha256: str
    intermediate_sha256: str = ""
    """The intermediate that signed it (empty from a CA older than the field)."""
    crl: bytes = b""
    """The CA's CRLs when it signed (empty from a CA older than the field)."""


def view_from_status(status: Mapping[str, Any], roots_pem: bytes, crl_pem: bytes = b"") -> CAView:
    """A `CAView` from ``GET /status``, ``GET /roots`` and ``GET /crl``.

    Raises:
        ValueError: if the status lacks a field, the roots are not the bundle it names
            (the CA moved on between the two requests: read both again), or a CRL does not
            parse.
    """
    try:
        intermediate = status["signing"]["intermediate_fingerprint_sha256"]
        bundle_sha256 = status["bundle_sha256"]
        tls_policy = status["tls_policy"]
        phase = status["phase"]
        trust_domain = status["trust_domain"]
    except (KeyError, TypeError) as error:
        raise ValueError(f"CA status lacks {error}") from None
    if sha256_hex(roots_pem) != bundle_sha256:
        raise ValueError("CA roots changed while they were read")
    return CAView(
        intermediate_sha256=str(intermediate),
        bundle_pem=roots_pem,
        bundle_sha256=str(bundle_sha256),
        tls_policy=dict(tls_policy),
        phase=str(phase),
        trust_domain=str(trust_domain),
        crl_pem=crl_pem,
        revoked_serials=crl_serials(crl_pem),
    )


def parse_answer(document: Mapping[str, Any]) -> Answer:
    """Read a ``POST /sign`` answer.

    Raises:
        ValueError: ``CA answer lacks 'serial'`` and the like.
    """
    for key, kind in (
        ("certificate", str),
        ("ca", str),
        ("tls_policy", dict),
        ("serial", str),
        ("not_after", str),
    ):
        if not isinstance(document.get(key), kind):
            raise ValueError(f"CA answer lacks '{key}'")
    ca = document["ca"].encode()
    return Answer(
        certificate=document["certificate"].encode(),
        ca=ca,
        tls_policy=document["tls_policy"],
        serial=document["serial"],
        not_after=document["not_after"],
        bundle_sha256=str(document.get("bundle_sha256") or sha256_hex(ca)),
        intermediate_sha256=str(document.get("intermediate_sha256") or ""),
        crl=str(document.get("crl") or "").encode(),
    )


def secret_body(
    claim: Claim,
    key_pem: bytes,
    answer: Answer,
    *,
    pods: Iterable[Mapping[str, Any]],
    labels: Mapping[str, str] | None = None,
    federated: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """The whole Secret for ``claim`` from a fresh key and the CA's answer.

    Args:
        claim: the identity.
        key_pem: the leaf's private key (PKCS#8 PEM); it goes into ``data`` only.
        answer: the CA's answer for the CSR of ``key_pem``.
        pods: the pods that use the Secret; each becomes an owner.
        labels: extra labels, e.g. the chart's.
        federated: the federated bundle files (`CAView.federated`).
    """
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": claim.secret,
            "namespace": claim.namespace,
            "labels": {**(labels or {}), LABEL_MANAGED: "true"},
            "annotations": {
                ANNOTATION_SERIAL: answer.serial,
                ANNOTATION_NOT_AFTER: answer.not_after,
                ANNOTATION_BUNDLE: answer.bundle_sha256,
                ANNOTATION_CLAIM: claim.digest,
            },
        },
        "data": _encode(
            {
                CERT: answer.certificate,
                KEY: key_pem,
                CA: answer.ca,
                POLICY: policy_bytes(answer.tls_policy),
                **({CRL: answer.crl} if answer.crl else {}),
                **(federated or {}),
            }
        ),
    }
    merge_owners(body, pods)
    return body


def trust_data(ca: CAView) -> dict[str, str]:
    """The ``data`` entries a trust-bundle, policy, CRL or federation change rewrites (the leaf
    stays)."""
    files = {CA: ca.bundle_pem, POLICY: policy_bytes(ca.tls_policy), **ca.federated}
    return _encode({**files, CRL: ca.crl_pem} if ca.crl_pem else files)


def refreshed_data(data: Mapping[str, str], ca: CAView) -> dict[str, str]:
    """``data`` with `trust_data` written over it; the files of a trust domain that is no longer
    federated are removed."""
    kept = {name: value for name, value in data.items() if not federated_bundles([name])}
    return {**kept, **trust_data(ca)}


def policy_config_map(
    namespace: str,
    tls_policy: Mapping[str, Any],
    *,
    labels: Mapping[str, str] | None = None,
    crl_pem: bytes = b"",
    federated: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """The ConfigMap `POLICY_CONFIG_MAP` of ``namespace``: the ``tls-policy.json``, the
    ``ca.crl`` and the federated bundle files a Secret of the same CA carries, byte for byte.

    Args:
        namespace: where the pod-certificate pods are.
        tls_policy: the CA's TLS policy (`CAView.tls_policy`).
        labels: extra labels, e.g. the chart's.
        crl_pem: the CA's CRLs (`CAView.crl_pem`); empty: no ``ca.crl`` key.
        federated: the federated bundle files (`CAView.federated`).
    """
    data = {POLICY: policy_bytes(tls_policy).decode()}
    if crl_pem:
        data[CRL] = crl_pem.decode("ascii", errors="replace")
    for name, roots in (federated or {}).items():
        data[name] = roots.decode("ascii", errors="replace")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": POLICY_CONFIG_MAP,
            "namespace": namespace,
            "labels": {**(labels or {}), LABEL_MANAGED: "true"},
        },
        "data": data,
    }


def merge_owners(secret: dict[str, Any], pods: Iterable[Mapping[str, Any]]) -> bool:
    """Add every pod in ``pods`` as an owner of ``secret``; True if a reference was added.

    Existing references (other pods, or anything a user added) are kept; the garbage collector
    deletes the Secret only after its last owner is gone.
    """
    before = len(secret.get("metadata", {}).get("ownerReferences", []))
    for pod in pods:
        owner = kopf.Body(cast(kopf.RawBody, pod))
        kopf.append_owner_reference(
            secret, owner=owner, controller=False, block_owner_deletion=False
        )
    return len(secret["metadata"].get("ownerReferences", [])) != before


def decode_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's ``data`` decoded; entries that are not valid base64 are left out."""
    decoded = {}
    for name, value in (secret.get("data") or {}).items():
        try:
            decoded[name] = base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            continue
    return decoded


def _encode(files: Mapping[str, bytes]) -> dict[str, str]:
    return {name: base64.b64encode(content).decode() for name, content in files.items()}
