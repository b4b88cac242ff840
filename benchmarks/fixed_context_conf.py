"""gunicorn settings of ``mtls_server.gunicorn_conf``, but with a context built once and never
reloaded: the ceiling a reloading context is measured against in ``bench_tls.py``."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtls_context import options, server_context
from mtls_context.layout import CERT, KEY
from mtls_server.gunicorn_conf import (
    bind,
    control_socket_disable,
    keepalive,
    threads,
    worker_class,
    workers,
)

__all__ = [
    "bind",
    "certfile",
    "control_socket_disable",
    "keepalive",
    "keyfile",
    "ssl_context",
    "threads",
    "worker_class",
    "workers",
]

cert_dir = Path(options.cert_dir())
certfile = str(cert_dir / CERT)
keyfile = str(cert_dir / KEY)
_context: ssl.SSLContext | None = None


def ssl_context(
    config: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    global _context
    if _context is None:
        _context = server_context(cert_dir)
    return _context
