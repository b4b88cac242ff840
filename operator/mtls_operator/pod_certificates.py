"""The rules of the pod-certificate signer: how a PodCertificateRequest of our signer name is
answered (`pod_certificate_signer.Signer` does the answering).

In ``pod-certificate`` mode (`mtls_contract.marks.POD_CERTIFICATE`) the kubelet makes the pod's key
in memory and asks for a certificate with a PodCertificateRequest (``certificates.k8s.io/v1``,
"PCR"); the key never leaves the node. The signer answers only requests from namespaces the
installation serves (`scope.Scope`) for pods that opted in: it reads the pod as the API server
stores it and takes the names from its annotations (``hello-mtls.dev/name`` and
``hello-mtls.dev/sans``, judged by `claims.parse_claim` like a Secret-mode pod's, with
``hello-mtls.dev/mode: pod-certificate``), never from the request's ``unverifiedUserAnnotations``,
which whoever writes the pod's volumes writes and any node may relay. It has the CA sign the
kubelet's key for those names and the SPIFFE ID of the PCR's service account, and writes the status
the API server validates: one ``Issued``, ``Denied`` or ``Failed`` condition, the chain, and
``notBefore``/``beginRefreshAt``/``notAfter`` taken from the certificate itself. It also keeps the
ClusterTrustBundle of its signer name equal to the CA's roots (both during a root rotation).

On each ``Issued`` status it also annotates the request's pod with the intermediate that signed
(`mtls_contract.marks.ANNOTATION_INTERMEDIATE`): PCRs are deleted after 15 minutes, so the pod is
where the root rotation (`rotation_driver`) reads, even after a restart, whether the pod's current
certificate comes from the CA's current intermediate.

This module holds the rules, as pure functions (`sign_request`, `issued_status`, `refused_status`,
`trust_bundle`, `is_final`, `intermediate_sha256`, `certificate_intermediate`);
`pod_certificate_signer.Signer` ties them to the API (`ports.PodCertificates`) and the CA.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Mapping
from typing import Any, TypedDict

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from mtls_contract import durations
from mtls_contract.ca_api import SignRequest
from mtls_contract.marks import (
    ANNOTATION_INTERMEDIATE,
    ANNOTATION_MODE,
    ANNOTATION_NAME,
    POD_CERTIFICATE,
)
from mtls_operator.claims import POD_CERTIFICATE_LIFETIMES, Rules, parse_claim

__all__ = [
    "BUNDLE_SUFFIX",
    "DENIED",
    "FAILED",
    "ISSUED",
    "Refused",
    "bundle_name",
    "certificate_intermediate",
    "intermediate_sha256",
    "is_final",
    "max_lifetime",
    "issued_status",
    "refused_status",
    "sign_request",
    "trust_bundle",
]

ISSUED, DENIED, FAILED = "Issued", "Denied", "Failed"
BUNDLE_SUFFIX = "roots"
# What the API server accepts of an issued certificate (see docs/operator.md, "Pod certificates").
_MIN_LIFETIME = POD_CERTIFICATE_LIFETIMES[0]
_REFRESH_MARGIN = datetime.timedelta(minutes=10)
_MAX_SKEW = datetime.timedelta(minutes=5)
_DEFAULT_MAX_EXPIRATION = 86400  # the API's default for spec.maxExpirationSeconds


class Refused(Exception):
    """The request gets no certificate: a ``Denied`` (its own fault) or ``Failed`` condition."""

    def __init__(self, condition: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.condition, self.reason, self.message = condition, reason, message


def is_final(pcr: Mapping[str, Any]) -> bool:
    """Whether the request is answered already: its status is then immutable."""
    conditions = (pcr.get("status") or {}).get("conditions") or []
    return any(c.get("type") in (ISSUED, DENIED, FAILED) for c in conditions)


def intermediate_sha256(chain_pem: bytes) -> str:
    """The SHA-256 of the certificate after the leaf in ``chain_pem``: the intermediate that
    signed it, named as the CA's status names its current one ("" if the chain has none)."""
    chain = x509.load_pem_x509_certificates(chain_pem)
    return chain[1].fingerprint(hashes.SHA256()).hex() if len(chain) > 1 else ""


def certificate_intermediate(pod: Mapping[str, Any], signer_name: str) -> str | None:
    """Which intermediate signed the certificate ``pod`` holds from ``signer_name``, as far as
    its `ANNOTATION_INTERMEDIATE` tells; None if it holds none.

    A pod holds one when a projected volume of it has a podCertificate source of that signer and
    the signer annotated it, or it runs: the kubelet starts no container before every volume is
    ready, and a podCertificate volume is ready only once its request is issued. A running pod
    without the annotation got its certificate from an operator before the annotation: "" (not
    known). A pod still waiting for its first certificate (or refused one) and a pod that ended
    hold none.
    """
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    asks = bool(signer_name) and any(
        (source.get("podCertificate") or {}).get("signerName") == signer_name
        for volume in spec.get("volumes") or []
        for source in (volume.get("projected") or {}).get("sources") or []
    )
    phase = status.get("phase")
    if not asks or phase in ("Succeeded", "Failed"):
        return None
    annotated = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_INTERMEDIATE)
    if annotated is not None:
        return str(annotated)
    return "" if phase == "Running" else None


def sign_request(
    pcr: Mapping[str, Any], pod: Mapping[str, Any] | None, *, rules: Rules
) -> SignRequest:
    """The ``POST /sign`` body for a PodCertificateRequest of ``pod``.

    ``pod`` is the request's pod as the API server stores it (None: there is none). Its own
    annotations give the names, and only if it opted in to pod-certificate mode; the request's
    ``unverifiedUserAnnotations`` are never read. The lifetime is
    ``spec.maxExpirationSeconds`` (at most the CA's maximum); the duration asked for is shorter
    by the CA's backdating, so that notAfter - notBefore is the lifetime exactly and never
    above what the request allows.

    Raises:
        Refused: the pod is gone or did not opt in, annotations the policy refuses, no readable
            key, or a lifetime the API would not accept. The key's type and a stub request's
            signature are the CA's to check.
    """
    meta, spec = pcr["metadata"], pcr["spec"]
    namespace, pod_name = meta["namespace"], spec.get("podName", "")
    if pod is None or (pod.get("metadata") or {}).get("uid") != spec.get("podUID"):
        raise Refused(DENIED, "PodGone", f"pod '{pod_name}' of this request no longer exists")
    annotations = pod["metadata"].get("annotations") or {}
    not_opted_in = Refused(
        DENIED,
        "NotOptedIn",
        f"pod '{pod_name}' did not opt in: this signer signs only pods annotated {ANNOTATION_NAME}"
        f" and {ANNOTATION_MODE}: {POD_CERTIFICATE}",
    )
    if ANNOTATION_NAME not in annotations:
        raise not_opted_in
    try:
        claim = parse_claim(
            annotations,
            namespace=namespace,
            service_account=spec.get("serviceAccountName") or "default",
            rules=rules,
        )
    except ValueError as error:
        raise Refused(DENIED, "InvalidAnnotations", str(error)) from None
    if claim.mode != POD_CERTIFICATE:
        raise not_opted_in
    lifetime = min(max_lifetime(pcr), rules.maximum)
    if lifetime < _MIN_LIFETIME:
        raise Refused(
            FAILED,
            "LifetimeBelowMinimum",
            f"the CA's maximum lifetime {durations.format_duration(rules.maximum)} is below"
            f" the {durations.format_duration(_MIN_LIFETIME)} a pod certificate needs",
        )
    return {
        **_public_key(spec),
        "names": list(claim.names),
        "duration": durations.format_duration(lifetime - durations.BACKDATE),
        "namespace": namespace,
        "service_account": spec.get("serviceAccountName") or "default",
    }


def max_lifetime(pcr: Mapping[str, Any]) -> datetime.timedelta:
    """The longest lifetime the request allows: ``spec.maxExpirationSeconds`` or the API's
    default."""
    seconds = (pcr.get("spec") or {}).get("maxExpirationSeconds") or _DEFAULT_MAX_EXPIRATION
    return datetime.timedelta(seconds=seconds)


def issued_status(
    chain_pem: bytes,
    *,
    max_lifetime: datetime.timedelta,
    refresh_fraction: float,
    now: datetime.datetime,
    intermediate_sha256: str = "",
) -> dict[str, Any]:
    """The status of an issued request, from the chain the CA answered.

    notBefore and notAfter are the leaf's own (certificates carry whole seconds, as metav1.Time
    does); beginRefreshAt is at ``refresh_fraction`` of the lifetime, inside the window the API
    allows (10 minutes after notBefore to 10 minutes before notAfter).

    Raises:
        Refused: ``Failed`` if the certificate would not pass the API server's checks (the
            intermediate expires too soon, or the clocks disagree by more than 5 minutes).
    """
    leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    lifetime = not_after - not_before
    if not _MIN_LIFETIME <= lifetime <= max_lifetime:
        raise Refused(
            FAILED,
            "LifetimeOutOfBounds",
            f"the CA issued a certificate valid for {lifetime}, outside the"
            f" {durations.format_duration(_MIN_LIFETIME)} to"
            f" {max_lifetime} this request allows (does the CA's intermediate expire soon?)",
        )
    if abs(not_before - now) > _MAX_SKEW:
        raise Refused(
            FAILED, "ClockSkew", f"the CA's notBefore {_time(not_before)} is not near now"
        )
    refresh = not_before + lifetime * refresh_fraction
    refresh = min(max(refresh, not_before + _REFRESH_MARGIN), not_after - _REFRESH_MARGIN)
    message = f"certificate {leaf.serial_number:x}"
    if intermediate_sha256:
        message += f" from intermediate {intermediate_sha256}"
    return {
        "conditions": [_condition(ISSUED, "Issued", message, now)],
        "certificateChain": chain_pem.decode(),
        "notBefore": _time(not_before),
        "beginRefreshAt": _time(refresh.replace(microsecond=0)),
        "notAfter": _time(not_after),
    }


def refused_status(refused: Refused, *, now: datetime.datetime) -> dict[str, Any]:
    """The status of a denied or failed request: the condition alone, as the API requires."""
    return {"conditions": [_condition(refused.condition, refused.reason, refused.message, now)]}


def bundle_name(signer_name: str) -> str:
    """The ClusterTrustBundle's name: the API requires the signer name with ``/`` as ``:``."""
    return f"{signer_name.replace('/', ':')}:{BUNDLE_SUFFIX}"


def trust_bundle(signer_name: str, roots_pem: bytes) -> dict[str, Any]:
    """The ClusterTrustBundle that carries the CA's roots for ``signer_name``."""
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "ClusterTrustBundle",
        "metadata": {
            "name": bundle_name(signer_name),
            "labels": {"app.kubernetes.io/managed-by": "hello-mtls-operator"},
        },
        "spec": {"signerName": signer_name, "trustBundle": roots_pem.decode()},
    }


class _PublicKey(TypedDict, total=False):
    csr: str
    public_key: str


def _public_key(spec: Mapping[str, Any]) -> _PublicKey:
    """The kubelet's key as ``POST /sign`` takes it; the CA checks it (and a CSR's signature)."""
    try:
        if spec.get("stubPKCS10Request"):
            return {"csr": _pem("CERTIFICATE REQUEST", spec["stubPKCS10Request"])}
        if spec.get("pkixPublicKey"):
            return {"public_key": _pem("PUBLIC KEY", spec["pkixPublicKey"])}
    except (ValueError, binascii.Error) as error:
        raise Refused(DENIED, "InvalidPublicKey", f"the key is not base64: {error}") from None
    raise Refused(DENIED, "InvalidPublicKey", "the request has no stubPKCS10Request")


def _pem(label: str, value: str) -> str:
    der = base64.b64decode(value, validate=True)  # []byte fields are base64 in the API's JSON
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"


def _condition(kind: str, reason: str, message: str, now: datetime.datetime) -> dict[str, str]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": _time(now),
    }


def _time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
