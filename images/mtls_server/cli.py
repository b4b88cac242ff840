"""``hello-mtls-server``: run the example app with a reloading mTLS context, on one of two stacks:
``flask`` (gunicorn + Flask, the default) or ``fastapi`` (uvicorn + FastAPI)."""

from __future__ import annotations

import argparse
import copy
import functools
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from mtls_context import Side, Status, client_context, options, server_context, statuses
from mtls_context.identity import PeerCert
from mtls_context.status import STATUS_DIR_ENV, read_statuses
from mtls_server import settings


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; with ``--probe``, check a running server (exit 0: healthy)."""
    args = _parser().parse_args(argv)
    cert_dir = Path(args.cert_dir)
    if args.probe:
        return probe(str(args.bind), cert_dir, timeout=args.probe_timeout)
    try:
        server_context(cert_dir)
    except (OSError, ValueError) as e:
        print(f"hello-mtls-server: {cert_dir}: {e}", file=sys.stderr)
        return 2
    os.environ.update(
        HELLO_MTLS_BIND=str(args.bind),
        HELLO_MTLS_CERT_DIR=str(cert_dir),
        HELLO_MTLS_ALLOW=",".join(args.allow),
        HELLO_MTLS_CHECK_INTERVAL=str(args.check_interval),
        HELLO_MTLS_WORKERS=str(args.workers),
        HELLO_MTLS_THREADS=str(args.threads),
    )
    status_dir = tempfile.mkdtemp(prefix="hello-mtls-status-")
    main_pid = os.getpid()
    try:
        if args.metrics_port:
            # Each worker process publishes what it serves here; this process serves them all.
            os.environ[STATUS_DIR_ENV] = status_dir
            serve_metrics(args.metrics_port, lambda: read_statuses(status_dir))
        if args.stack == "fastapi":
            return _uvicorn(args.bind, cert_dir, args.check_interval, args.workers)
        return _gunicorn()
    finally:
        if os.getpid() == main_pid:  # gunicorn's forked workers leave through here too
            shutil.rmtree(status_dir, ignore_errors=True)


def _gunicorn() -> int:
    """gunicorn serving the Flask app with `mtls_server.gunicorn_conf`, until SIGTERM or SIGINT."""
    from gunicorn.app.wsgiapp import WSGIApplication

    sys.argv = [
        "hello-mtls-server",
        "-c",
        "python:mtls_server.gunicorn_conf",
        "mtls_server:create_app()",
    ]
    WSGIApplication("%(prog)s").run()
    return 0


def _uvicorn(bind: options.Address, cert_dir: Path, check_interval: float, workers: int) -> int:
    """uvicorn serving `mtls_server.fastapi_app` (each worker process with its own reloading
    context), until SIGTERM or SIGINT."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from mtls_context.starlette_peer import PeerCertH11Protocol
    from mtls_server.fastapi_app import reloading_context

    log_config = copy.deepcopy(LOGGING_CONFIG)  # and the library's reload messages
    log_config["loggers"]["mtls_context"] = {"handlers": ["default"], "level": "INFO"}
    uvicorn.run(
        "mtls_server.fastapi_app:create_app",
        factory=True,
        host=bind.host,
        port=bind.port,
        workers=workers,
        http=PeerCertH11Protocol,
        ssl_context_factory=functools.partial(reloading_context, cert_dir, check_interval),
        log_config=log_config,
        access_log=False,
    )
    return 0


def probe(bind: str, cert_dir: Path, *, timeout: float) -> int:
    """GET /healthz over mTLS on loopback, with the server's own certificate as the client's.

    This proves what a liveness probe should: the workers answer, and the certificate, key and
    trust bundle on disk make a valid mTLS handshake. It opens no unauthenticated port.
    """
    try:
        host, port = options.parse_bind(bind)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        context = client_context(cert_dir)
        name = context.certificate.identity
        with socket.create_connection((host, port), timeout=timeout) as raw:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed ACK
            with context.wrap_socket(raw, server_hostname=name) as tls:
                tls.sendall(
                    f"GET /healthz HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()
                )
                status_line = tls.recv(256).split(b"\r\n", 1)[0].decode(errors="replace")
                served: PeerCert = tls.getpeercert() or {}
    except (OSError, ValueError) as e:
        print(f"unhealthy: {e}", file=sys.stderr)
        return 1
    if status_line.split(" ")[1:2] != ["200"]:
        print(f"unhealthy: {status_line}", file=sys.stderr)
        return 1
    print(f"healthy: {status_line}, serving serial {served.get('serialNumber', '?')}")
    return 0


def serve_metrics(port: int, source: Callable[[], Iterable[Status]] = statuses) -> None:
    """Start the ``/metrics`` thread (prometheus-client is imported only when asked for)."""
    from mtls_context import prometheus

    prometheus.serve(port, source=source)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hello-mtls-server", description=__doc__)
    settings.add_arguments(p)
    p.add_argument(
        "--probe",
        action="store_true",
        help="check the server at --bind over mTLS and exit 0 if healthy "
        "(for Kubernetes exec probes)",
    )
    p.add_argument("--probe-timeout", type=float, default=3.0, help=argparse.SUPPRESS)
    options.add_common(p, side=Side.SERVER)
    return p
