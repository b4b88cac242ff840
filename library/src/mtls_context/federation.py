"""Peers of other trust domains: each checked against its own trust domain's bundle only.

A federated trust domain's roots arrive as their own file beside ``ca.crt``
(``federated-<trust domain>.crt``, `mtls_context.layout.federated_bundle`), never merged into
it. A context trusts such a bundle only when the app names that trust domain in its patterns
(``spiffe://other.example/ns/shop/*``), and then OpenSSL verifies each chain against our roots
and the named bundles together, while a verify callback of the context decides which root may
vouch for what, in the handshake, before any app code sees the peer:

- a chain that ends at one of our roots (``ca.crt``) is ours, as without federation; it may
  not carry a SPIFFE ID of a federated trust domain;
- a chain that ends at a root of trust domain T's bundle must name exactly one URI, a SPIFFE
  ID of T, that matches one of the patterns; a foreign root signing our trust domain's ID is
  refused. Its DNS names mean nothing here (a foreign CA cannot vouch for the names of our
  cluster): `mtls_context.identity` names such a peer by its SPIFFE ID and matches allow-lists
  against that ID only (`is_federated`);
- a client that pins the server's SPIFFE ID (``peers`` on the client side) requires the ID
  to match for our own servers too, instead of the host name check.

The callback is OpenSSL's ``SSL_CTX_set_verify`` callback set through ctypes
(`mtls_context.openssl`); Python's ``ssl`` keeps it when the verify mode changes.
"""

from __future__ import annotations

import ctypes
import logging
import re
import ssl
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from mtls_context import der, openssl
from mtls_context.layout import CERT, federated_bundle, federated_bundles

__all__ = [
    "Federation",
    "check_pattern",
    "is_federated",
    "matches",
    "subject_alt_names",
    "trust_domain",
]

_log = logging.getLogger("mtls_context")

# SPIFFE ID spec 2.2: path segments are letters, digits, dots, dashes and underscores.
_SEGMENT = re.compile(r"[a-zA-Z0-9._-]+")
_SAN_OID = b"\x06\x03\x55\x1d\x11"  # 2.5.29.17 subjectAltName
_URI, _DNS = 0x86, 0x82  # GeneralName [6] uniformResourceIdentifier, [2] dNSName
_X509_V_OK = 0
_X509_V_ERR_UNABLE_TO_GET_CRL = 3
_X509_V_ERR_APPLICATION_VERIFICATION = 50

_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)

# Every trust domain whose bundle a context of this process has trusted. It only grows: a
# de-federated trust domain's peers can no longer connect, and its IDs stay foreign.
_federated: set[str] = set()


def is_federated(spiffe_id: str) -> bool:
    """Whether ``spiffe_id`` is of a trust domain this process trusts as federated (not ours)."""
    try:
        return trust_domain(spiffe_id) in _federated
    except ValueError:
        return False


def trust_domain(spiffe_id: str) -> str:
    """The trust domain of a SPIFFE ID (``spiffe://td/path``) or pattern.

    Raises:
        ValueError: if it is not a SPIFFE ID.
    """
    if not spiffe_id.startswith("spiffe://"):
        raise ValueError(f"{spiffe_id!r} is not a SPIFFE ID (spiffe://<trust domain>/<path>)")
    name = spiffe_id.removeprefix("spiffe://").split("/", 1)[0]
    try:
        federated_bundle(name)
    except ValueError as e:
        raise ValueError(f"{spiffe_id!r}: {e}") from None
    return name


def check_pattern(pattern: str) -> str:
    """``pattern`` if it is a SPIFFE ID or a SPIFFE ID prefix ending in ``/*``.

    ``spiffe://other.example/*`` is every ID of that trust domain,
    ``spiffe://other.example/ns/shop/*`` every ID under ``/ns/shop/``.

    Raises:
        ValueError: if it is neither (the message says why).
    """
    name = trust_domain(pattern)
    path = pattern.removeprefix(f"spiffe://{name}")
    segments = path.split("/")[1:] if path else []
    if segments and segments[-1] == "*":
        segments = segments[:-1]
    elif not segments:
        raise ValueError(f"{pattern!r} names no workload: end it with /* for a whole trust domain")
    if not all(_SEGMENT.fullmatch(segment) for segment in segments):
        raise ValueError(f"{pattern!r}: path segments are [a-zA-Z0-9._-]+, '*' only as the last")
    return pattern


def matches(pattern: str, spiffe_id: str) -> bool:
    """Whether ``spiffe_id`` is ``pattern``, or lies under it when it ends in ``/*``."""
    if pattern.endswith("/*"):
        return spiffe_id.startswith(pattern[:-1]) and len(spiffe_id) > len(pattern) - 1
    return spiffe_id == pattern


def subject_alt_names(certificate: bytes) -> tuple[list[str], list[str]]:
    """The URI and DNS subject alternative names of a DER certificate.

    Raises:
        ValueError: if the DER is malformed.
    """
    tbs = der.children(der.content(certificate, 0x30))[0]
    uris: list[str] = []
    dns: list[str] = []
    for element in der.children(der.content(tbs, 0x30)):
        if element[0] != 0xA3:  # [3] extensions
            continue
        for extension in der.children(der.content(der.content(element, 0xA3), 0x30)):
            parts = der.children(der.content(extension, 0x30))
            if parts[0] != _SAN_OID:
                continue
            names = der.content(der.content(parts[-1], 0x04), 0x30)
            for name in der.children(names):
                if name[0] == _URI:
                    uris.append(der.content(name, _URI).decode("ascii"))
                elif name[0] == _DNS:
                    dns.append(der.content(name, _DNS).decode("ascii"))
    return uris, dns


def _roots(pem: bytes) -> frozenset[bytes]:
    return frozenset(body for kind, body in der.pem_blocks(pem) if kind == b"CERTIFICATE")


@dataclass(frozen=True)
class Federation:
    """Which roots may vouch for which peers, for one context."""

    own: frozenset[bytes]
    """Our roots (``ca.crt``), DER."""
    bundles: Mapping[str, frozenset[bytes]]
    """The roots of each federated trust domain the patterns name and the directory holds."""
    patterns: tuple[str, ...]
    """The SPIFFE IDs and ``/*`` patterns of the peers allowed from those trust domains."""
    pinned: bool = False
    """A client's pin: every server, ours too, must present an ID matching ``patterns``."""
    missing: tuple[str, ...] = field(default=())
    """Trust domains the patterns name with no bundle file (their peers are refused)."""

    @classmethod
    def from_files(
        cls, files: Mapping[str, bytes], ca: str, patterns: Collection[str], *, pinned: bool
    ) -> Federation:
        """The federation of one directory version for ``patterns``.

        Raises:
            ValueError: if a pattern is malformed or a bundle holds no certificate.
        """
        for pattern in patterns:
            check_pattern(pattern)
        own = _roots(files[ca])
        chain = der.pem_blocks(files[CERT])
        ours = (
            {_domain_or_none(uri) for uri in subject_alt_names(chain[0][1])[0]} if chain else set()
        )
        available = federated_bundles(files)
        bundles, missing = {}, []
        for domain in sorted({trust_domain(pattern) for pattern in patterns}):
            if domain not in available:
                if domain not in ours:
                    missing.append(domain)
                continue
            if domain in ours:
                raise ValueError(
                    f"{available[domain]} is of our own trust domain, which ca.crt holds"
                )
            roots = _roots(files[available[domain]])
            if not roots:
                raise ValueError(f"{available[domain]} holds no certificate")
            bundles[domain] = roots - own
        _federated.update(bundles)
        return cls(own, bundles, tuple(patterns), pinned, tuple(missing))

    def trusted_pem(self) -> str:
        """The federated roots to load beside ``ca.crt``."""
        return "".join(
            ssl.DER_cert_to_PEM_cert(root) for roots in self.bundles.values() for root in roots
        )

    def refusal(self, leaf: bytes, root: bytes) -> str | None:
        """Why a chain from ``leaf`` up to ``root`` (both DER, verified by OpenSSL) is refused;
        None when it is accepted."""
        uris, dns = subject_alt_names(leaf)
        ids = [uri for uri in uris if uri.startswith("spiffe://")]
        if root in self.own:
            foreign = [i for i in ids if _domain_or_none(i) in self.bundles]
            if foreign:
                return f"our CA vouches for {foreign[0]} of a federated trust domain"
            if self.pinned and not any(matches(p, i) for p in self.patterns for i in ids):
                return f"server presents {ids or dns}, not {' or '.join(self.patterns)}"
            return None
        domains = [name for name, roots in self.bundles.items() if root in roots]
        if not domains:
            return "the chain ends at a root of no trust domain this context trusts"
        if len(uris) != 1 or len(ids) != 1:
            return f"a certificate of {domains[0]} must name exactly one SPIFFE ID, not {uris}"
        if _domain_or_none(ids[0]) not in domains:
            return f"a root of {domains[0]} vouches for {ids[0]} of another trust domain"
        if not any(matches(pattern, ids[0]) for pattern in self.patterns):
            return f"{ids[0]} is not allowed ({', '.join(self.patterns)})"
        return None

    def install(self, context: ssl.SSLContext) -> None:
        """Make ``context`` refuse, in the handshake, every chain `refusal` refuses.

        Raises:
            RuntimeError: if OpenSSL is not reachable through ctypes.
        """
        lib = openssl.libssl()
        pointer = openssl.ssl_ctx(context)

        def verify(ok: int, store: int) -> int:
            try:
                depth = lib.X509_STORE_CTX_get_error_depth(store)
                error = lib.X509_STORE_CTX_get_error(store)
                if depth != 0 or not (ok or error == _X509_V_ERR_UNABLE_TO_GET_CRL):
                    return ok
                chain = lib.X509_STORE_CTX_get0_chain(store)
                count = lib.OPENSSL_sk_num(chain)
                leaf = openssl.certificate_der(lib.OPENSSL_sk_value(chain, 0))
                root = openssl.certificate_der(lib.OPENSSL_sk_value(chain, count - 1))
                if not ok and root in self.own:
                    return ok  # our CA's CRL is missing: refused as without federation
                why = self.refusal(leaf, root)
            except Exception as e:  # noqa: BLE001 - an exception may not cross into OpenSSL
                why = f"cannot check the chain: {e}"
            if why is None:
                # ``ca.crl`` covers our CA only: a federated peer has no CRL to check here.
                lib.X509_STORE_CTX_set_error(store, _X509_V_OK)
                return 1
            _log.info("refused a peer: %s", why)
            lib.X509_STORE_CTX_set_error(store, _X509_V_ERR_APPLICATION_VERIFICATION)
            return 0

        callback = _VerifyCallback(verify)
        lib.SSL_CTX_set_verify(pointer, lib.SSL_CTX_get_verify_mode(pointer), callback)
        context._federation_callback = callback  # type: ignore[attr-defined]  # keep it alive


def _domain_or_none(spiffe_id: str) -> str | None:
    try:
        return trust_domain(spiffe_id)
    except ValueError:
        return None
