"""What the operator knows of the CA: `CAView`, read from ``GET /status``, ``GET /roots`` and
``GET /crl`` (`mtls_contract.ca_api` reads the documents), with the federated trust domains'
bundles the operator fetches itself. Every managed Secret should match it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mtls_contract import name_rules
from mtls_contract.ca_api import parse_status
from mtls_contract.phases import Phase
from mtls_operator.certs import crl_serials, federated_digest, sha256_hex

__all__ = ["CAView", "view_from_status"]


@dataclass(frozen=True)
class CAView:
    """What the CA currently hands out; every managed Secret should match it."""

    intermediate_sha256: str
    bundle_pem: bytes
    bundle_sha256: str
    tls_policy: Mapping[str, Any]
    phase: str = Phase.IDLE
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


def view_from_status(status: Mapping[str, Any], roots_pem: bytes, crl_pem: bytes = b"") -> CAView:
    """A `CAView` from ``GET /status``, ``GET /roots`` and ``GET /crl``.

    Raises:
        ValueError: if the status lacks a field, the roots are not the bundle it names
            (the CA moved on between the two requests: read both again), or a CRL does not
            parse.
    """
    read = parse_status(status)
    if sha256_hex(roots_pem) != read.bundle_sha256:
        raise ValueError("CA roots changed while they were read")
    return CAView(
        intermediate_sha256=read.intermediate_sha256,
        bundle_pem=roots_pem,
        bundle_sha256=read.bundle_sha256,
        tls_policy=read.tls_policy,
        phase=read.phase,
        trust_domain=read.trust_domain,
        crl_pem=crl_pem,
        revoked_serials=crl_serials(crl_pem),
    )
