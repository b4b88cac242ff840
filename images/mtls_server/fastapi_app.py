"""The hello-mtls example server on FastAPI: the Flask app's routes and answers, for uvicorn.

Run it with ``hello-mtls-server --stack fastapi``: uvicorn with the library's reloading server
context (`mtls_context.ReloadingServerContext`, through uvicorn's ``ssl_context_factory``) and
its protocol that hands the verified client certificate to the app
(`mtls_context.starlette_peer.PeerCertH11Protocol`). By hand::

    uvicorn.run("mtls_server.fastapi_app:create_app", factory=True, http=PeerCertH11Protocol,
                ssl_context_factory=partial(reloading_context, Path("/var/run/hello-mtls"), 1.0))
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse
from starlette.exceptions import HTTPException

from mtls_context import ReloadingServerContext, options
from mtls_context.starlette_peer import require_peer

__all__ = ["create_app", "reloading_context"]


def create_app(allow: Collection[str] | None = None) -> FastAPI:
    """Create the FastAPI application.

    ``allow`` (DNS names and SPIFFE IDs; default from ``HELLO_MTLS_ALLOW``, comma separated)
    restricts which clients get a hello. Empty: every verified client does.
    """
    if allow is None:
        allow = options.allow()
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    greeted, verified = require_peer(allow), require_peer()

    @app.exception_handler(HTTPException)
    async def one_line(request: Request, exc: HTTPException) -> PlainTextResponse:
        return PlainTextResponse(f"{exc.detail}\n", status_code=exc.status_code)

    @app.get("/", response_class=PlainTextResponse)
    def index(who: str = Depends(greeted)) -> str:
        """Greet the client by the identity in its certificate (401 without one, 403 if an
        allow-list is set and the client is not on it)."""
        return f"Hello, {who}!\n"

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz(who: str = Depends(verified)) -> str:
        """For ``hello-mtls-server --probe``: any verified client, allow-list or not."""
        return "ok\n"

    return app


def reloading_context(
    cert_dir: Path, check_interval: float, config: Any, default: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory`` (bind the first two arguments with ``partial``): each
    worker serves every connection from the current generation of ``cert_dir``."""
    peers = options.federated_peers(options.allow())
    return ReloadingServerContext(cert_dir, check_interval=check_interval, peers=peers)
