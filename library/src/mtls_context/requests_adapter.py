"""requests over mTLS with certificates that reload from a certificate directory.

Needs ``requests`` (the rest of ``mtls_context`` is stdlib only). Use it to call any mTLS
service whose certificates come from hello-mtls::

    from mtls_context.requests_adapter import session, tls_info

    s = session("/var/run/hello-mtls")
    r = s.get("https://hello.default.svc:8443/")
    tls_info(r)   # TLSInfo(server_serial=..., client_serial=...)

The session trusts only the directory's ``ca.crt`` and presents its ``tls.crt``. New connections
use the newest valid version of the directory (checked at most every ``check_interval`` s);
requests already in flight finish on their connection. ``verify=False``, ``verify=<path>``,
``cert=...`` and proxies are refused, and certifi or ``REQUESTS_CA_BUNDLE`` never reach the
context.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import requests
from requests.adapters import HTTPAdapter

from mtls_context import Certificate, MTLSContext, ReloadingContext, Side
from mtls_context.identity import TLSInfo, serial
from mtls_context.reloading import DEFAULT_CHECK_INTERVAL

if TYPE_CHECKING:
    from requests.adapters import _HostParams, _PoolKwargs

__all__ = ["ReloadingAdapter", "TLSInfo", "session", "tls_info"]

_TLS_INFO = "_hello_mtls_tls_info"


def session(
    cert_dir: str | os.PathLike[str],
    *,
    check_interval: float = DEFAULT_CHECK_INTERVAL,
    peers: Sequence[str] = (),
) -> requests.Session:
    """A ``requests.Session`` whose HTTPS requests use mTLS from ``cert_dir``.

    The environment is not consulted (``trust_env = False``): no ``REQUESTS_CA_BUNDLE``, no
    proxies, no netrc. Plain ``http://`` URLs are refused. With ``peers`` (SPIFFE IDs or ``/*``
    patterns) the server must present a matching SPIFFE ID, checked instead of its host name;
    it may be of a federated trust domain they name (`mtls_context.federation`).

    Raises:
        ValueError: if ``cert_dir`` does not hold a valid certificate set (the message says why).
        OSError: if it cannot be read.
    """
    s = requests.Session()
    s.trust_env = False
    contexts = ReloadingContext(
        Path(cert_dir), Side.CLIENT, check_interval=check_interval, peers=peers
    )
    s.mount("https://", ReloadingAdapter(contexts))
    s.mount("http://", _RefuseAdapter())
    return s


def tls_info(response: requests.Response) -> TLSInfo | None:
    """Server and client certificate serials of a response from a :func:`session`."""
    info = getattr(response, _TLS_INFO, None)
    return info if isinstance(info, TLSInfo) else None


class ReloadingAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections use the current context of a ``ReloadingContext``.

    When the context changes, the pool is replaced: idle connections close, in-flight ones finish
    and close when released, and new connections use the new certificate and trust bundle.
    """

    def __init__(self, contexts: ReloadingContext, **kwargs: Any) -> None:
        self._contexts = contexts
        self._context = contexts.current()
        self._swap_lock = threading.Lock()
        super().__init__(**kwargs)

    @property
    def certificate(self) -> Certificate:
        """The client certificate new connections present."""
        return self._contexts.current().certificate

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self._pool_args = (connections, maxsize, block)
        pool_kwargs.update(_tls_kwargs(self._context))
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        *,
        verify: object = True,
        cert: object = None,
        **kwargs: Any,
    ) -> requests.Response:
        if verify is not True:
            raise ValueError(
                f"verify={verify!r} is not allowed: the trust bundle is "
                f"{self._contexts.directory}/ca.crt"
            )
        if cert is not None:
            raise ValueError(
                f"cert= is not allowed: the client certificate is {self._contexts.directory}"
            )
        self._follow(self._contexts.current())
        return super().send(request, verify=True, cert=None, **kwargs)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[_HostParams, _PoolKwargs]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        # requests would put certifi or REQUESTS_CA_BUNDLE here, and urllib3 would then load
        # those roots into our context on every new connection.
        for key in ("ca_certs", "ca_cert_dir", "cert_file", "key_file"):
            cast(dict[str, Any], pool_kwargs).pop(key, None)
        pool_kwargs["cert_reqs"] = "CERT_REQUIRED"
        cast(dict[str, Any], pool_kwargs).update(_tls_kwargs(self._context))
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Nothing to do: everything is in our context (requests would set certifi here)."""

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise ValueError(f"proxy {proxy} refused: mTLS sessions connect directly")

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = super().build_response(req, resp)
        sock = getattr(resp.connection, "sock", None)
        if isinstance(sock, ssl.SSLSocket) and isinstance(sock.context, MTLSContext):
            peer = sock.getpeercert()
            if peer:
                info = TLSInfo(serial(peer), sock.context.certificate.serial)
                setattr(response, _TLS_INFO, info)
        return response

    def _follow(self, context: MTLSContext) -> None:
        if context is self._context:
            return
        with self._swap_lock:
            if context is self._context:
                return
            old = self.poolmanager
            self._context = context
            self.init_poolmanager(*self._pool_args)
            old.clear()


def _tls_kwargs(context: MTLSContext) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"ssl_context": context}
    if context.federation is not None and context.federation.pinned:
        # The context checks the server's SPIFFE ID in the handshake, instead of its host name,
        # which urllib3 would otherwise match itself.
        kwargs["assert_hostname"] = False
    return kwargs


class _RefuseAdapter(HTTPAdapter):
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        raise ValueError(f"{request.url}: plain HTTP refused, use https://")
