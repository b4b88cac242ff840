"""The trust domains this one federates with, and their SPIFFE bundles. Pure functions.

The chart lists them (``federation.trustDomains``); the operator reads the list from
``HELLO_MTLS_FEDERATION`` (`parse_sources`), fetches each bundle endpoint (`bundle_fetcher`)
and puts each trust domain's roots, read from its bundle by `roots_from_bundle`, in a file of
its own beside ``ca.crt`` (`mtls_context.layout.federated_bundle`): never merged into our roots.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mtls_context.layout import federated_bundle

__all__ = [
    "DEFAULT_REFRESH_HINT",
    "HTTPS_SPIFFE",
    "HTTPS_WEB",
    "MAX_REFRESH_HINT",
    "MIN_REFRESH_HINT",
    "Bundle",
    "Source",
    "parse_sources",
    "roots_from_bundle",
]

HTTPS_WEB = "https_web"
HTTPS_SPIFFE = "https_spiffe"
DEFAULT_REFRESH_HINT = 300
"""Seconds between fetches when a bundle names no ``spiffe_refresh_hint`` (the spec's 5 min)."""
MIN_REFRESH_HINT = 5
MAX_REFRESH_HINT = 86400
"""A hint is kept within these bounds: an endpoint can neither make us poll it in a loop nor
stop us polling for days."""
MAX_KEYS = 64


@dataclass(frozen=True)
class Source:
    """One federated trust domain: where its bundle endpoint is and how to trust it."""

    trust_domain: str
    url: str
    profile: str
    endpoint_spiffe_id: str = ""
    """``https_spiffe``: the SPIFFE ID the endpoint's certificate must carry."""
    bootstrap_pem: bytes = b""
    """``https_spiffe``: the trust domain's roots to trust the endpoint with until its first
    bundle arrives. ``https_web``: the roots its certificate chains to, when it is not a Web PKI
    certificate (a hello-mtls CA's own serving certificate); empty: the Web PKI roots."""

    @property
    def file(self) -> str:
        """Its file and Secret key: ``federated-<trust domain>.crt``."""
        return federated_bundle(self.trust_domain)


@dataclass(frozen=True)
class Bundle:
    """What a bundle endpoint answered: the X.509 roots, and when to ask again."""

    roots_pem: bytes
    refresh_hint: int
    sequence: int | None


def parse_sources(text: str) -> tuple[Source, ...]:
    """The trust domains of ``HELLO_MTLS_FEDERATION``: a JSON list of objects with
    ``trustDomain``, ``bundleEndpointURL``, ``profile`` (``https_web`` or ``https_spiffe``)
    and, as the profile needs, ``endpointSPIFFEID`` and ``bundle`` (PEM).

    Raises:
        ValueError: naming the entry and what is wrong with it.
    """
    try:
        entries = json.loads(text or "[]")
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(entries, list):
        raise ValueError("expected a JSON list of trust domains")
    sources = [_source(i, entry) for i, entry in enumerate(entries)]
    names = [s.trust_domain for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"trust domain {duplicates[0]} is listed twice")
    return tuple(sources)


def _source(index: int, entry: Any) -> Source:
    where = f"trust domain #{index + 1}"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected an object")
    name = entry.get("trustDomain")
    if not isinstance(name, str):
        raise ValueError(f"{where}: trustDomain is required")
    where = f"trust domain {name}"
    try:
        federated_bundle(name)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    url = entry.get("bundleEndpointURL")
    if not isinstance(url, str) or urlsplit(url).scheme != "https" or not urlsplit(url).hostname:
        raise ValueError(f"{where}: bundleEndpointURL must be an https:// URL")
    profile = entry.get("profile", HTTPS_WEB)
    if profile not in (HTTPS_WEB, HTTPS_SPIFFE):
        raise ValueError(f"{where}: profile must be {HTTPS_WEB} or {HTTPS_SPIFFE}")
    spiffe_id = entry.get("endpointSPIFFEID", "")
    bootstrap = entry.get("bundle", "")
    if not isinstance(spiffe_id, str) or not isinstance(bootstrap, str):
        raise ValueError(f"{where}: endpointSPIFFEID and bundle are strings")
    if profile == HTTPS_SPIFFE:
        if not spiffe_id.startswith("spiffe://"):
            raise ValueError(f"{where}: https_spiffe needs endpointSPIFFEID (spiffe://...)")
        if not bootstrap.strip():
            raise ValueError(f"{where}: https_spiffe needs a bootstrap bundle (PEM)")
    if bootstrap.strip():
        try:
            x509.load_pem_x509_certificates(bootstrap.encode())
        except ValueError:
            raise ValueError(f"{where}: bundle is not PEM certificates") from None
    return Source(name, url, profile, spiffe_id, bootstrap.encode())


def roots_from_bundle(document: Any) -> Bundle:
    """The X.509 roots of a SPIFFE bundle (a JWK Set: the ``x5c`` of every ``use: x509-svid``
    key, SPIFFE Trust Domain and Bundle section 4), PEM, in the bundle's order.

    Keys of other uses (``jwt-svid``) are skipped.

    Raises:
        ValueError: if it is not a bundle, or holds no X.509 root, or a root is not a CA.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("not a SPIFFE bundle: no 'keys' list")
    keys: Sequence[Any] = document["keys"]
    if len(keys) > MAX_KEYS:
        raise ValueError(f"{len(keys)} keys, more than {MAX_KEYS}")
    roots = []
    for key in keys:
        if not isinstance(key, Mapping) or key.get("use") != "x509-svid":
            continue
        x5c = key.get("x5c")
        if not isinstance(x5c, list) or len(x5c) != 1 or not isinstance(x5c[0], str):
            raise ValueError("an x509-svid key must carry exactly one certificate in x5c")
        try:
            root = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True))
            constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
        except (ValueError, binascii.Error, x509.ExtensionNotFound):
            raise ValueError("an x5c certificate does not parse or is not a CA") from None
        if not constraints.value.ca:
            raise ValueError("an x5c certificate is not a CA")
        roots.append(root.public_bytes(Encoding.PEM))
    if not roots:
        raise ValueError("the bundle holds no x509-svid key")
    hint = document.get("spiffe_refresh_hint", DEFAULT_REFRESH_HINT)
    if not isinstance(hint, int) or isinstance(hint, bool):
        hint = DEFAULT_REFRESH_HINT
    sequence = document.get("spiffe_sequence")
    return Bundle(
        roots_pem=b"".join(roots),
        refresh_hint=min(max(hint, MIN_REFRESH_HINT), MAX_REFRESH_HINT),
        sequence=sequence if isinstance(sequence, int) else None,
    )
