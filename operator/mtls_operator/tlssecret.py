"""The ``kubernetes.io/tls`` Secret the operator writes, built from a ``POST /sign`` answer, and
the ConfigMap that gives pod-certificate pods the same ``tls-policy.json`` and ``ca.crl``.

Functions over plain dicts (the API's JSON), with no I/O, so they are tested without a cluster.
All are pure but one: `merge_owners` changes the Secret dict it is given, in place, as
`kopf.append_owner_reference` does (one reference per pod, none marked as controller: several
pods share one Secret, and only one owner may be the controller). It is written here rather than
imported so that these rules need no kopf (docs/decisions/2026-12-07-shared-contract.md).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from mtls_ca.tls_profiles import policy_bytes
from mtls_context.layout import CA, CRL, POLICY, federated_bundles, version_files
from mtls_contract.ca_api import SignAnswer
from mtls_contract.marks import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CLAIM,
    ANNOTATION_NOT_AFTER,
    ANNOTATION_SERIAL,
    LABEL_MANAGED,
)
from mtls_operator.ca_view import CAView
from mtls_operator.claims import Claim

__all__ = [
    "POLICY_CONFIG_MAP",
    "decode_data",
    "is_managed",
    "merge_owners",
    "policy_config_map",
    "refreshed_data",
    "secret_body",
    "trust_data",
]

POLICY_CONFIG_MAP = "hello-mtls-tls-policy"
"""The ConfigMap, one per namespace, that a pod-certificate pod's projected volume reads
``tls-policy.json`` from (the kubelet writes the key and certificate, a ClusterTrustBundle
``ca.crt``)."""


def secret_body(
    claim: Claim,
    key_pem: bytes,
    answer: SignAnswer,
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
                **version_files(
                    answer.certificate,
                    key_pem,
                    answer.ca,
                    policy_bytes(answer.tls_policy),
                    answer.crl,
                ),
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
    refs = secret.setdefault("metadata", {}).setdefault("ownerReferences", [])
    before = len(refs)
    for pod in pods:
        meta = pod.get("metadata") or {}
        if not any(ref.get("uid") == meta.get("uid") for ref in refs):
            ref = {
                "controller": False,
                "blockOwnerDeletion": False,
                "apiVersion": pod.get("apiVersion"),
                "kind": pod.get("kind"),
                "name": meta.get("name"),
                "uid": meta.get("uid"),
            }
            refs.append({k: v for k, v in ref.items() if v is not None})
    return len(refs) != before


def is_managed(body: Mapping[str, Any]) -> bool:
    """Only exactly ``hello-mtls.dev/managed=true`` marks a Secret or ConfigMap as ours (the
    label selector of the operator's watch says the same); any other value is someone else's."""
    return (body["metadata"].get("labels") or {}).get(LABEL_MANAGED) == "true"


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
