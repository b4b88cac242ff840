"""The CA's HTTP API as its clients read it: the ``POST /sign`` request and answer, and the
fields of ``GET /status`` that the operator, the demo and ``hello-mtls`` act on.

The CA parses what it receives itself (`mtls_ca.sign_request`, every field checked); the API's
whole document is ``GET /openapi.json``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

__all__ = ["CAStatus", "SignAnswer", "SignRequest", "parse_sign_answer", "parse_status"]


class SignRequest(TypedDict):
    """A ``POST /sign`` body: a CSR (or, for a pod certificate, the kubelet's public key), the
    names, the duration as ``name_rules.format_duration`` writes it, and the workload's
    namespace and service account (its SPIFFE ID)."""

    csr: NotRequired[str]
    public_key: NotRequired[str]
    names: list[str]
    duration: str
    namespace: str
    service_account: str


@dataclass(frozen=True)
class SignAnswer:
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


@dataclass(frozen=True)
class CAStatus:
    """What ``GET /status`` says the CA hands out now."""

    intermediate_sha256: str
    bundle_sha256: str
    tls_policy: Mapping[str, Any]
    phase: str
    """A `Phase` (compared as its name: a later CA's new phase is passed on, not refused)."""
    trust_domain: str


def parse_sign_answer(document: Mapping[str, Any]) -> SignAnswer:
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
    return SignAnswer(
        certificate=document["certificate"].encode(),
        ca=ca,
        tls_policy=document["tls_policy"],
        serial=document["serial"],
        not_after=document["not_after"],
        bundle_sha256=str(document.get("bundle_sha256") or hashlib.sha256(ca).hexdigest()),
        intermediate_sha256=str(document.get("intermediate_sha256") or ""),
        crl=str(document.get("crl") or "").encode(),
    )


def parse_status(document: Mapping[str, Any]) -> CAStatus:
    """Read ``GET /status``.

    Raises:
        ValueError: ``CA status lacks 'phase'`` and the like.
    """
    try:
        intermediate = document["signing"]["intermediate_fingerprint_sha256"]
        bundle_sha256 = document["bundle_sha256"]
        tls_policy = document["tls_policy"]
        phase = document["phase"]
        trust_domain = document["trust_domain"]
    except (KeyError, TypeError) as error:
        raise ValueError(f"CA status lacks {error}") from None
    return CAStatus(
        intermediate_sha256=str(intermediate),
        bundle_sha256=str(bundle_sha256),
        tls_policy=dict(tls_policy),
        phase=str(phase),
        trust_domain=str(trust_domain),
    )
