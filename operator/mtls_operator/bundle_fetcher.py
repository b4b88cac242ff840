"""Fetches the bundle of every federated trust domain on its refresh hint, and keeps the last
good one when an endpoint fails.

`FederatedBundles.poll` runs in the leader's reconcile loop (a standby never fetches): each
endpoint is asked when its hint (`federation.Bundle.refresh_hint`) has passed, over HTTPS with
a timeout and a bounded answer. A failure keeps the last good roots and tries again sooner
(within the hint, at least every `RETRY_SECONDS`); a trust domain whose last good bundle is
older than three hints, or that never answered, is stale: a warning in the log and
``hello_mtls_operator_federated_bundle_stale{trust_domain}`` = 1.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

from mtls_operator import metrics
from mtls_operator.federation import HTTPS_SPIFFE, Bundle, Source, roots_from_bundle

__all__ = ["MAX_BUNDLE_BYTES", "RETRY_SECONDS", "TIMEOUT_SECONDS", "FederatedBundles", "fetch"]

TIMEOUT_SECONDS = 5.0
MAX_BUNDLE_BYTES = 1 << 20
RETRY_SECONDS = 10.0
_STALE_HINTS = 3

_log = logging.getLogger("mtls_operator")


def fetch(source: Source, trusted_pem: bytes, *, timeout: float = TIMEOUT_SECONDS) -> Bundle:
    """GET ``source``'s bundle endpoint and read its roots.

    ``https_web``: the endpoint's certificate must chain to the Web PKI roots and name its host;
    with ``source.bootstrap_pem`` (an endpoint under the trust domain's own roots, as another
    hello-mtls CA's is), to ``trusted_pem`` instead. ``https_spiffe``: it must chain to
    ``trusted_pem`` and carry ``source.endpoint_spiffe_id``. ``trusted_pem`` is the trust
    domain's last bundle, or the bootstrap bundle before the first fetch: so the endpoint stays
    trusted when its own root rotates (its certificate moves to the new root, which the last
    bundle holds from the rotation's first phase on). No client certificate is sent (the spec
    forbids one).

    Raises:
        OSError: the endpoint could not be reached or refused the TLS handshake.
        ValueError: the endpoint is not who it should be, or its answer is not a bundle.
    """
    url = urlsplit(source.url)
    if source.profile == HTTPS_SPIFFE:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # the SPIFFE ID is checked instead
        context.load_verify_locations(cadata=trusted_pem.decode("ascii"))
    elif source.bootstrap_pem:
        context = ssl.create_default_context(cadata=trusted_pem.decode("ascii"))
    else:
        context = ssl.create_default_context()
    host = url.hostname or ""
    connection = http.client.HTTPSConnection(
        host, url.port or 443, context=context, timeout=timeout
    )
    try:
        connection.connect()
        if source.profile == HTTPS_SPIFFE:
            sock = connection.sock
            assert isinstance(sock, ssl.SSLSocket)
            _check_spiffe_id(sock, source.endpoint_spiffe_id)
        connection.request("GET", url.path or "/", headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read(MAX_BUNDLE_BYTES + 1)
    finally:
        connection.close()
    if response.status != 200:
        raise ValueError(f"HTTP {response.status} {response.reason}")
    if len(body) > MAX_BUNDLE_BYTES:
        raise ValueError(f"the answer is larger than {MAX_BUNDLE_BYTES:,} bytes")
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"the answer is not JSON: {error}") from None
    return roots_from_bundle(document)


def _check_spiffe_id(sock: ssl.SSLSocket, expected: str) -> None:
    der = sock.getpeercert(binary_form=True)
    if der is None:
        raise ValueError("the endpoint presented no certificate")
    try:
        names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if uris != [expected]:
        raise ValueError(f"the endpoint presents {uris or 'no SPIFFE ID'}, not {expected}")


@dataclass
class _Domain:
    source: Source
    roots: bytes = b""
    refresh_hint: float = 30.0
    fetched_at: float | None = None
    due_at: float = -float("inf")
    stale: bool = False
    error: str = ""


class FederatedBundles:
    """The last good roots of each federated trust domain, fetched when due."""

    def __init__(
        self,
        sources: Sequence[Source],
        *,
        fetcher: Callable[[Source, bytes], Bundle] = fetch,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._domains = [_Domain(source) for source in sources]
        self._fetch = fetcher
        self._monotonic = monotonic

    def poll(self) -> bool:
        """Fetch every bundle that is due; True if any trust domain's roots changed."""
        changed = False
        for domain in self._domains:
            now = self._monotonic()
            if now < domain.due_at:
                continue
            name = domain.source.trust_domain
            trusted = domain.roots or domain.source.bootstrap_pem
            try:
                bundle = self._fetch(domain.source, trusted)
            except (OSError, ValueError) as error:
                metrics.FEDERATED_FETCH_FAILED.labels(name).inc()
                domain.due_at = now + min(domain.refresh_hint, RETRY_SECONDS)
                if str(error) != domain.error:
                    _log.warning("bundle of %s not fetched: %s", name, error)
                    domain.error = str(error)
            else:
                changed |= bundle.roots_pem != domain.roots
                if bundle.roots_pem != domain.roots:
                    _log.info("bundle of %s: %s", name, _summary(bundle))
                domain.roots, domain.refresh_hint = bundle.roots_pem, bundle.refresh_hint
                domain.fetched_at, domain.due_at, domain.error = now, now + bundle.refresh_hint, ""
            self._mark_stale(domain, now)
        return changed

    def files(self) -> dict[str, bytes]:
        """``federated-<trust domain>.crt`` to the last good roots, for every trust domain that
        has answered once."""
        return {d.source.file: d.roots for d in self._domains if d.roots}

    def _mark_stale(self, domain: _Domain, now: float) -> None:
        stale = domain.fetched_at is None or (
            now - domain.fetched_at > _STALE_HINTS * domain.refresh_hint
        )
        if stale and not domain.stale:
            _log.warning(
                "bundle of %s is stale: %s (pods keep its last good roots, if any)",
                domain.source.trust_domain,
                "never fetched" if domain.fetched_at is None else "not fetched for 3 hints",
            )
        domain.stale = stale
        metrics.FEDERATED_STALE.labels(domain.source.trust_domain).set(int(stale))


def _summary(bundle: Bundle) -> str:
    count = bundle.roots_pem.count(b"-----BEGIN CERTIFICATE-----")
    return f"{count} root(s), sequence {bundle.sequence}, refresh hint {bundle.refresh_hint} s"
