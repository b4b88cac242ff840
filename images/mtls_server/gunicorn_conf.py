"""gunicorn settings for the hello-mtls server; environment variables as in ``hello-mtls-server``.

The TLS settings are the library's (`mtls_context.gunicorn_hooks`), as in any user's config;
the worker settings below are this example's own.
"""

from __future__ import annotations

from mtls_context import options
from mtls_context.gunicorn_hooks import tls_settings
from mtls_server import settings

bind = str(options.bind())
control_socket_disable = True  # one per user by default; several servers would fight over it
worker_class = "gthread"
workers = settings.workers()
threads = settings.threads()
keepalive = 5

globals().update(
    tls_settings(
        options.cert_dir(),
        check_interval=options.check_interval(),
        peers=options.federated_peers(options.allow()),
    )
)
