"""``python -m support.stack_servers STACK PORT CERT_DIR CHECK_INTERVAL [fixed]``: one server.

Every stack serves ``GET /`` with ``hello from STACK`` (asyncio also says the client
certificate's serial in ``X-Client-Serial``) over mTLS from a
`mtls_context.ReloadingServerContext` given to the stack once, as a user would. With ``fixed``
it gets a context built once from the same files instead (what ``make bench-tls`` compares).
aiohttp and uvicorn also serve ``GET /whoami``: the client's identity through the library's
peer helpers, refused (403) unless it is in ``HELLO_ALLOW`` (comma separated) when that is set.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtls_context import ReloadingServerContext, Side, build_context
from mtls_context.contexts import ALPN
from mtls_context.layout import read_version

STACKS = ("asyncio", "uvicorn", "aiohttp", "hypercorn", "gunicorn-sync", "gunicorn-asgi")
HOST = "127.0.0.1"
ALLOW = [name for name in os.environ.get("HELLO_ALLOW", "").split(",") if name]


def main(stack: str, port: int, cert_dir: Path, check_interval: float, fixed: bool) -> None:
    def context(alpn: Sequence[str] = ALPN) -> ssl.SSLContext:
        if fixed:
            return build_context(read_version(cert_dir), Side.SERVER, alpn=alpn)
        return ReloadingServerContext(cert_dir, check_interval=check_interval, alpn=alpn)

    if stack == "asyncio":
        asyncio.run(_asyncio(context(), port))
    elif stack == "uvicorn":
        import uvicorn

        from mtls_context.starlette_peer import PeerCertH11Protocol

        uvicorn.run(
            fastapi_app(stack),
            host=HOST,
            port=port,
            ssl_context_factory=lambda config, default: context(),
            http=PeerCertH11Protocol,
            log_level="warning",
        )
    elif stack == "aiohttp":
        from aiohttp import web

        from mtls_context.aiohttp_peer import peer_identity, require_peer

        async def hello(request: web.Request) -> web.Response:
            return web.Response(text=f"hello from {stack}\n")

        async def whoami(request: web.Request) -> web.Response:
            return web.Response(text=f"{peer_identity(request)}\n")

        app = web.Application()
        app.router.add_get("/", hello)
        whoami_app = web.Application(middlewares=[require_peer(ALLOW)])
        whoami_app.router.add_get("", whoami)
        app.add_subapp("/whoami", whoami_app)
        web.run_app(app, host=HOST, port=port, ssl_context=context(), print=None)
    elif stack == "hypercorn":
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        class ReloadingConfig(Config):
            def create_ssl_context(self) -> ssl.SSLContext:
                return context(alpn=("h2", "http/1.1"))

        config = ReloadingConfig()
        config.bind = [f"{HOST}:{port}"]
        config.certfile, config.keyfile = str(cert_dir / "tls.crt"), str(cert_dir / "tls.key")
        asyncio.run(serve(fastapi_app(stack), config))
    elif stack.startswith("gunicorn-") and not fixed:
        _gunicorn(stack, port, cert_dir, check_interval)
    else:
        raise SystemExit(f"unknown stack {stack!r} (expected one of {STACKS})")


def _gunicorn(stack: str, port: int, cert_dir: Path, check_interval: float) -> None:
    """gunicorn with the library's settings, as a user's config file would add them."""
    from gunicorn.app.base import BaseApplication

    from mtls_context.gunicorn_hooks import tls_settings

    worker = stack.removeprefix("gunicorn-")

    def wsgi(environ: Any, start_response: Any) -> list[bytes]:
        body = f"hello from {stack}\n".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {"bind": f"{HOST}:{port}", "worker_class": worker, "workers": 1}
            for key, value in {
                **settings,
                **tls_settings(cert_dir, check_interval=check_interval),
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return fastapi_app(stack) if worker == "asgi" else wsgi

    Application().run()


async def _asyncio(context: ssl.SSLContext, port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        client = format(int(peer.get("serialNumber", "0"), 16), "x").encode()
        try:
            while request := await reader.readuntil(b"\r\n\r\n"):
                body = b"hello from asyncio\n"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nX-Client-Serial: %s\r\nContent-Length: %d\r\n\r\n%s"
                    % (client, len(body), body)
                )
                await writer.drain()
                if b"connection: close" in request.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, port, ssl=context)
    async with server:
        await server.serve_forever()


def fastapi_app(stack: str) -> Any:
    from fastapi import Depends, FastAPI
    from fastapi.responses import PlainTextResponse

    from mtls_context.starlette_peer import require_peer

    app = FastAPI()
    peer = require_peer(ALLOW)

    @app.get("/", response_class=PlainTextResponse)
    def hello() -> str:
        return f"hello from {stack}\n"

    @app.get("/whoami", response_class=PlainTextResponse)
    def whoami(who: str = Depends(peer)) -> str:
        return f"{who}\n"

    return app


if __name__ == "__main__":
    main(
        sys.argv[1],
        int(sys.argv[2]),
        Path(sys.argv[3]),
        float(sys.argv[4]),
        fixed=sys.argv[5:] == ["fixed"],
    )
