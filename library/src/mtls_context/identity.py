"""Names in a verified peer certificate, as ``ssl.SSLSocket.getpeercert()`` returns it."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from mtls_context.federation import is_federated, matches

__all__ = [
    "PeerCert",
    "TLSInfo",
    "allowed",
    "common_name",
    "dns_names",
    "identity",
    "own_identity",
    "serial",
    "spiffe_ids",
    "wsgi_peer_cert",
]

PeerCert = dict[str, Any]


@dataclass(frozen=True)
class TLSInfo:
    """The certificates of the connection that carried a response (the clients' ``tls_info``)."""

    server_serial: str
    client_serial: str


def dns_names(cert: PeerCert) -> list[str]:
    """The DNS subject alternative names, in certificate order."""
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]


def spiffe_ids(cert: PeerCert) -> list[str]:
    """The ``spiffe://`` URI subject alternative names."""
    return [
        value
        for kind, value in cert.get("subjectAltName", ())
        if kind == "URI" and value.startswith("spiffe://")
    ]


def common_name(cert: PeerCert) -> str | None:
    """The subject's common name, if it has one."""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def identity(cert: PeerCert) -> str:
    """Who the certificate names: its first DNS SAN, else its SPIFFE ID, else its CN.

    The first DNS SAN is the name the workload asked for (``hello-mtls.dev/name``). A peer of a
    federated trust domain is named by its SPIFFE ID only: a foreign CA does not vouch for DNS
    names here (`mtls_context.federation`).

    Raises:
        ValueError: if the certificate carries none of the three.
    """
    foreign = [i for i in spiffe_ids(cert) if is_federated(i)]
    return foreign[0] if foreign else own_identity(cert)


def own_identity(cert: PeerCert) -> str:
    """`identity` of a certificate of our own CA (a context's own): its first DNS SAN, else its
    SPIFFE ID, else its CN, whatever trust domains the process federates.

    Raises:
        ValueError: if the certificate carries none of the three.
    """
    for candidates in (dns_names(cert), spiffe_ids(cert)):
        if candidates:
            return candidates[0]
    name = common_name(cert)
    if name:
        return name
    raise ValueError("certificate has no DNS name, SPIFFE ID or common name")


def allowed(cert: PeerCert, allow: Collection[str]) -> bool:
    """Whether one of the certificate's DNS names or SPIFFE IDs is in ``allow``.

    ``allow`` holds DNS names, SPIFFE IDs and SPIFFE ID patterns ending in ``/*``
    (``spiffe://other.example/ns/shop/*``). The DNS names of a peer of a federated trust domain
    are not matched, only its SPIFFE ID. An empty ``allow`` admits every verified peer (a server
    admits a peer of a federated trust domain only if its ``peers`` name it).
    """
    if not allow:
        return True
    ids = spiffe_ids(cert)
    names = [] if any(is_federated(i) for i in ids) else dns_names(cert)
    return not set(allow).isdisjoint(names) or any(matches(a, i) for a in allow for i in ids)


def wsgi_peer_cert(environ: Mapping[str, Any]) -> PeerCert | None:
    """The verified client certificate of a WSGI request served by gunicorn over TLS.

    gunicorn puts the connection's socket in ``environ["gunicorn.socket"]``. None when the
    request came without a certificate or not over TLS.
    """
    getpeercert = getattr(environ.get("gunicorn.socket"), "getpeercert", None)
    cert = getpeercert() if getpeercert is not None else None
    return cert or None


def serial(cert: PeerCert) -> str:
    """The serial number as lowercase hex without leading zeros (the form the CA prints)."""
    return format(int(cert["serialNumber"], 16), "x")
