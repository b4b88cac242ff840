"""The library's gunicorn settings in a user's own config file, with the user's worker class."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from harness.example_servers import EXAMPLES
from harness.processes import BIN, free_port, running
from harness.waiting import wait_until
from mtls_context import client_context
from support.certdirs import Issuer, publish, serial_of
from support.https_get import Reply, get

CONFIG = """\
from mtls_context.gunicorn_hooks import tls_settings

bind = "127.0.0.1:{port}"
worker_class = "{worker}"
workers = 1
control_socket_disable = True
globals().update(tls_settings("{cert_dir}", check_interval=0.5))
"""
APPS = {
    "sync": "mtls_server:create_app()",
    "gthread": "mtls_server:create_app()",
    "asgi": "fastapi_app:app",  # examples/fastapi_app.py
}


def start(tmp_path: Path, worker: str, cert_dir: Path) -> tuple[list[str], int]:
    port = free_port()
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(CONFIG.format(port=port, worker=worker, cert_dir=cert_dir))
    app = APPS.get(worker, "mtls_server:create_app()")
    return [
        str(BIN / "gunicorn"),
        "-c",
        str(conf),
        "--chdir",
        str(EXAMPLES),
        app,
    ], port


def test_a_worker_class_that_never_reloads_is_refused_at_start(tmp_path: Path) -> None:
    issuer = Issuer()
    publish(tmp_path / "server", issuer.issue("localhost"), [issuer])
    argv, _ = start(tmp_path, "uvicorn.workers.UvicornWorker", tmp_path / "server")

    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)

    assert done.returncode == 1
    assert (
        "Error: worker class uvicorn.workers.UvicornWorker never calls gunicorn's ssl_context "
        "hook, so its certificate would never reload" in done.stderr
    )


@pytest.mark.parametrize("worker", APPS)
def test_every_reloading_worker_serves_a_new_certificate(tmp_path: Path, worker: str) -> None:
    issuer = Issuer()
    publish(tmp_path / "server", issuer.issue("localhost"), [issuer])
    publish(tmp_path / "client", issuer.issue("client.test"), [issuer])
    argv, port = start(tmp_path, worker, tmp_path / "server")
    client = client_context(tmp_path / "client")
    with running(argv, tmp_path / "gunicorn.log"):
        first = _first_reply(port, client, tmp_path / "gunicorn.log")
        assert first.response.startswith("HTTP/1.1 200")
        leaf = issuer.issue("localhost")
        publish(tmp_path / "server", leaf, [issuer])

        wait_until(
            f"{worker} to serve the new certificate on a new connection",
            lambda: get(port, client).serial == serial_of(leaf),
            timeout=30,
            interval=0.1,
            retry_on=(),
        )


def _first_reply(port: int, client: ssl.SSLContext, log: Path) -> Reply:
    try:
        return wait_until(
            "gunicorn's first reply",
            lambda: get(port, client),
            timeout=30,
            interval=0.2,
            retry_on=(OSError,),  # not listening yet
        )
    except AssertionError as error:
        raise AssertionError(f"{error}\n{log.read_text()}") from None
