"""The verified peer of a Starlette or FastAPI request on uvicorn over mTLS (needs uvicorn and
Starlette).

ASGI servers do not pass the client certificate to the app, so run uvicorn with
``http=PeerCertH11Protocol``: it adds the certificate to each request's scope. Then::

    @app.get("/")
    def index(who: str = Depends(require_peer(allow=["web.shop.svc"]))) -> str:
        return f"Hello, {who}!"
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from uvicorn.protocols.http.h11_impl import H11Protocol

from mtls_context.identity import PeerCert, allowed, identity

__all__ = ["SCOPE_EXTENSION", "PeerCertH11Protocol", "peer_cert", "require_peer"]

SCOPE_EXTENSION = "hello_mtls.peercert"
"""The key in ``scope["extensions"]`` that holds ``getpeercert()`` of the connection."""


class PeerCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus the connection's verified client certificate in the scope.

    asyncio calls ``connection_made`` once the TLS handshake is complete, so the certificate is
    known before the first request.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cert = transport.get_extra_info("peercert") or None
        app = self.app

        async def with_peer(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})[SCOPE_EXTENSION] = cert
            await app(scope, receive, send)

        self.app = with_peer


def peer_cert(connection: HTTPConnection) -> PeerCert | None:
    """The verified client certificate of a request or websocket, or None."""
    cert: Any = connection.scope.get("extensions", {}).get(SCOPE_EXTENSION)
    return cert or None


def require_peer(allow: Collection[str] = ()) -> Callable[[HTTPConnection], str]:
    """A FastAPI dependency giving the client's identity: 401 without a verified client
    certificate, 403 if ``allow`` (DNS names and SPIFFE IDs) is given and the client is not on
    it."""

    def dependency(request: HTTPConnection) -> str:
        cert = peer_cert(request)
        if cert is None:
            raise HTTPException(401, "no verified client certificate")
        if not allowed(cert, allow):
            raise HTTPException(403, f"{identity(cert)} is not on this server's allow-list")
        return identity(cert)

    return dependency
