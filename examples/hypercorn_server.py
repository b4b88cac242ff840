"""hypercorn serving ``fastapi_app.py`` (HTTP/2 and HTTP/1.1) on one ReloadingServerContext.

Run: ``python examples/hypercorn_server.py`` (``HELLO_MTLS_CERT_DIR``, ``HELLO_MTLS_BIND``).
hypercorn does not hand the client certificate to the app; TLS still requires and verifies it.
"""

import asyncio
import ssl
from pathlib import Path

from hypercorn.asyncio import serve
from hypercorn.config import Config

from fastapi_app import app
from mtls_context import ReloadingServerContext, options

CERT_DIR = Path(options.cert_dir())


class MTLSConfig(Config):
    def create_ssl_context(self) -> ssl.SSLContext:
        interval = options.check_interval()
        return ReloadingServerContext(CERT_DIR, check_interval=interval, alpn=("h2", "http/1.1"))


if __name__ == "__main__":
    host, port = options.bind()
    config = MTLSConfig()
    config.bind = [f"{host}:{port}"]
    config.certfile = str(CERT_DIR / "tls.crt")  # these two only switch TLS on
    config.keyfile = str(CERT_DIR / "tls.key")
    # Starlette's ASGI types are its own, not hypercorn's; the app is the same ASGI callable.
    asyncio.run(serve(app, config))  # type: ignore[arg-type]
