"""aiohttp serving on one ReloadingServerContext; ``/whoami`` greets the verified client, refused
(403) unless it is on ``HELLO_MTLS_ALLOW`` when that is set.

Run: ``python examples/aiohttp_server.py`` (``HELLO_MTLS_CERT_DIR``, ``HELLO_MTLS_BIND``).
"""

from pathlib import Path

from aiohttp import web

from mtls_context import ReloadingServerContext, options
from mtls_context.aiohttp_peer import peer_identity, require_peer


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello from aiohttp\n")


async def whoami(request: web.Request) -> web.Response:
    return web.Response(text=f"{peer_identity(request)}\n")


if __name__ == "__main__":
    app = web.Application()
    app.router.add_get("/", hello)
    peers = web.Application(middlewares=[require_peer(allow=options.allow())])
    peers.router.add_get("", whoami)
    app.add_subapp("/whoami", peers)
    context = ReloadingServerContext(
        Path(options.cert_dir()), check_interval=options.check_interval()
    )
    host, port = options.bind()
    web.run_app(app, host=host, port=port, ssl_context=context)
