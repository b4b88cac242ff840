"""The verified peer of an aiohttp server request over mTLS (needs aiohttp).

::

    app = web.Application(middlewares=[require_peer(allow=["web.shop.svc"])])

    async def index(request):
        return web.Response(text=f"Hello, {peer_identity(request)}!")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web

from mtls_context.identity import PeerCert, allowed, identity

__all__ = ["peer_cert", "peer_identity", "require_peer"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def peer_cert(request: web.Request) -> PeerCert | None:
    """The verified client certificate of ``request``, or None."""
    transport = request.transport
    cert: Any = transport.get_extra_info("peercert") if transport is not None else None
    return cert or None


def peer_identity(request: web.Request) -> str | None:
    """The client's first DNS name, else SPIFFE ID, else common name; None without one."""
    cert = peer_cert(request)
    return identity(cert) if cert else None


def require_peer(allow: Collection[str] = ()) -> Any:
    """A middleware: 401 without a verified client certificate, 403 if ``allow`` (DNS names and
    SPIFFE IDs) is given and the client is not on it."""

    @web.middleware
    async def middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
        cert = peer_cert(request)
        if cert is None:
            return web.Response(status=401, text="no verified client certificate\n")
        if not allowed(cert, allow):
            return web.Response(
                status=403, text=f"{identity(cert)} is not on this server's allow-list\n"
            )
        return await handler(request)

    return middleware
