"""gunicorn settings for the hello-mtls server; environment variables as in ``hello-mtls-server``.

gunicorn calls ``ssl_context`` for every accepted connection with the ``gthread`` and ``sync``
workers (not with gevent or asgi workers, which call it once), so returning a cached context that
follows the certificate directory gives hot reload without reading files per connection.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtls_context import CERT, KEY, ReloadingContext, Side

cert_dir = Path(os.environ.get("HELLO_MTLS_CERT_DIR", "/var/run/hello-mtls"))
bind = os.environ.get("HELLO_MTLS_BIND", "0.0.0.0:8443")
control_socket_disable = True  # one per user by default; several servers would fight over it
worker_class = "gthread"
workers = int(os.environ.get("HELLO_MTLS_WORKERS", "2"))
threads = int(os.environ.get("HELLO_MTLS_THREADS", "4"))
keepalive = 5
# gunicorn switches TLS on only when these are set; the context itself comes from ssl_context.
certfile = str(cert_dir / CERT)
keyfile = str(cert_dir / KEY)

_check_interval = float(os.environ.get("HELLO_MTLS_CHECK_INTERVAL", "1.0"))
_contexts: ReloadingContext | None = None


def _reloading() -> ReloadingContext:
    global _contexts
    if _contexts is None:
        _contexts = ReloadingContext(cert_dir, Side.SERVER, check_interval=_check_interval)
    return _contexts


def post_worker_init(worker: Any) -> None:
    """Load the certificates when the worker boots, so a bad directory fails loudly at once."""
    log = logging.getLogger("mtls_context")
    log.handlers = worker.log.error_log.handlers
    log.setLevel(logging.INFO)
    _reloading()


def ssl_context(
    config: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    """The current context for this worker; a new file version is picked up within the interval."""
    return _reloading().current()
