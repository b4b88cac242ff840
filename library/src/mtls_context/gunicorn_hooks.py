"""gunicorn settings that serve TLS from a certificate directory and follow it.

Add one line to your own gunicorn config file; worker class, workers and threads stay yours::

    from mtls_context.gunicorn_hooks import tls_settings
    globals().update(tls_settings("/var/run/hello-mtls"))

This module never imports gunicorn or a web framework.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtls_context.contexts import Verify
from mtls_context.layout import CERT, KEY
from mtls_context.reloading import DEFAULT_CHECK_INTERVAL, DEFAULT_MAX_AGE, ReloadingServerContext

__all__ = ["RELOADING_WORKERS", "ReloadingHook", "tls_settings"]

RELOADING_WORKERS = frozenset(
    {
        "gunicorn.workers.sync.SyncWorker",
        "gunicorn.workers.gthread.ThreadWorker",
        "gunicorn.workers.gasgi.ASGIWorker",
        "gunicorn.workers.ggevent.GeventWorker",
        "gunicorn.workers.ggevent.GeventPyWSGIWorker",
        "gunicorn.workers.gtornado.TornadoWorker",
    }
)
"""Worker classes that take their context from gunicorn's ``ssl_context`` hook (and their
subclasses).

``sync`` and ``gthread`` call the hook per connection, the others once per worker and then
wrap each connection with the context they got, which is a `ReloadingServerContext`. Any other
class (``uvicorn.workers.UvicornWorker`` for one: it reads ``certfile``/``keyfile`` once)
would serve the first certificate until it expires, so it is refused at start."""


def tls_settings(
    cert_dir: str | os.PathLike[str],
    *,
    check_interval: float = DEFAULT_CHECK_INTERVAL,
    max_age: float = DEFAULT_MAX_AGE,
    verify: Verify = "required",
    peers: Sequence[str] = (),
) -> dict[str, Any]:
    """gunicorn settings: ``certfile``, ``keyfile``, ``ssl_context``, ``on_starting``,
    ``post_worker_init``.

    ``certfile`` and ``keyfile`` only switch gunicorn's TLS on; every context comes from the
    directory through the ``ssl_context`` hook. ``on_starting`` refuses a worker class that
    would never reload (see `RELOADING_WORKERS`). ``post_worker_init`` loads the directory when
    a worker boots (a bad directory fails at once, not on the first request) and sends the
    reload messages to gunicorn's error log. ``peers``: the clients of federated trust domains
    to accept (`mtls_context.build_context`).
    """
    hook = ReloadingHook(
        Path(cert_dir),
        check_interval=check_interval,
        max_age=max_age,
        verify=verify,
        peers=tuple(peers),
    )
    return {
        "certfile": str(Path(cert_dir) / CERT),
        "keyfile": str(Path(cert_dir) / KEY),
        "ssl_context": hook,
        "on_starting": refuse_workers_that_never_reload,
        "post_worker_init": hook.post_worker_init,
    }


def refuse_workers_that_never_reload(server: Any) -> None:
    """gunicorn ``on_starting`` hook: stop at start if the worker class ignores ``ssl_context``.

    Raises:
        RuntimeError: gunicorn prints it as ``Error: ...`` and exits with status 1.
    """
    worker = server.cfg.worker_class
    name = f"{worker.__module__}.{worker.__qualname__}"
    # A subclass (the CA's gthread worker, say) takes its context where its base does.
    if not any(f"{c.__module__}.{c.__qualname__}" in RELOADING_WORKERS for c in worker.__mro__):
        raise RuntimeError(
            f"worker class {name} never calls gunicorn's ssl_context hook, so its certificate "
            f"would never reload; use sync, gthread, asgi, gevent or tornado"
        )


class ReloadingHook:
    """gunicorn's ``ssl_context`` hook: one `ReloadingServerContext` per worker process."""

    def __init__(
        self,
        cert_dir: Path,
        *,
        check_interval: float,
        max_age: float,
        verify: Verify,
        peers: tuple[str, ...] = (),
    ) -> None:
        self._arguments = (cert_dir, check_interval, max_age, verify, peers)
        self._context: ReloadingServerContext | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __call__(
        self, config: Any, default_ssl_context_factory: Callable[[], Any]
    ) -> ssl.SSLContext:
        return self.context()

    def context(self) -> ReloadingServerContext:
        """This process's context, loaded on first use (contexts are never shared over fork)."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    cert_dir, check_interval, max_age, verify, peers = self._arguments
                    self._context = ReloadingServerContext(
                        cert_dir,
                        check_interval=check_interval,
                        max_age=max_age,
                        verify=verify,
                        peers=peers,
                    )
                    self._pid = os.getpid()
        assert self._context is not None
        return self._context

    def post_worker_init(self, worker: Any) -> None:
        """gunicorn hook: load now, and log reloads where gunicorn logs."""
        log = logging.getLogger("mtls_context")
        log.handlers = worker.log.error_log.handlers
        log.setLevel(logging.INFO)
        log.propagate = False
        self.context()
