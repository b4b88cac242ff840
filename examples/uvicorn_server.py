"""uvicorn (≥ 0.47) serving ``fastapi_app.py`` on one ReloadingServerContext.

Run: ``python examples/uvicorn_server.py`` (``HELLO_MTLS_CERT_DIR``, ``HELLO_MTLS_BIND``).
``PeerCertH11Protocol`` puts the client certificate into the ASGI scope; the context pickles as
its directory, so ``workers=N`` processes each load their own.
"""

from pathlib import Path

import uvicorn

from mtls_context import ReloadingServerContext, options
from mtls_context.starlette_peer import PeerCertH11Protocol

if __name__ == "__main__":
    host, port = options.bind()
    uvicorn.run(
        "fastapi_app:app",
        host=host,
        port=port,
        ssl_context_factory=lambda config, default: ReloadingServerContext(
            Path(options.cert_dir()), check_interval=options.check_interval()
        ),
        http=PeerCertH11Protocol,
    )
