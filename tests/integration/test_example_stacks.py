"""The example apps' other stacks as real processes on 127.0.0.1: ``hello-mtls-server --stack
fastapi`` (uvicorn + FastAPI) and ``hello-mtls-client --library httpx``, with each other and
with the defaults (gunicorn + Flask, requests; those alone: test_hello_mtls.py, test_rotation.py).
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from harness import ca_cli
from harness.processes import BIN, HelloServers, hello_client, hello_server, running, stop
from harness.waiting import elapsed_until, wait_until
from mtls_context import client_context
from mtls_context.layout import CA
from support.https_get import get

# (server stack, client library): every pair but the defaults' (test_hello_mtls.py).
PAIRS = [("fastapi", "requests"), ("fastapi", "httpx"), ("flask", "httpx")]
CHECK_INTERVAL = 0.5
RELOADED = ": reloaded, now certificate"


@pytest.mark.parametrize(("stack", "library"), PAIRS)
def test_hello(
    hello_servers: HelloServers,
    stack: str,
    library: str,
    server_dir: Path,
    tmp_path: Path,
    ca_state: Path,
) -> None:
    """Every pair greets the client by its certificate and reports both serials."""
    port = hello_servers.port(stack)
    ca_cli.issue(ca_state, tmp_path / "client", "client.test")

    code, lines = hello_client(
        f"https://localhost:{port}/", tmp_path / "client", f"--library={library}", count=3
    )

    assert code == 0, lines
    assert {line["body"] for line in lines} == {"Hello, client.test!"}
    assert {line["server_serial"] for line in lines} == {ca_cli.serial(server_dir)}
    assert {line["client_serial"] for line in lines} == {ca_cli.serial(tmp_path / "client")}


@pytest.mark.parametrize(("stack", "library"), PAIRS)
def test_allow_list_gives_403_with_a_one_line_reason(
    hello_servers: HelloServers, stack: str, library: str, tmp_path: Path, ca_state: Path
) -> None:
    """Both server stacks answer a client off the allow-list alike, whatever the client."""
    port = hello_servers.port(stack)
    ca_cli.issue(ca_state, tmp_path / "client", "intruder.test")

    code, [line] = hello_client(
        f"https://localhost:{port}/", tmp_path / "client", f"--library={library}"
    )

    assert (code, line["status"], line["error"]) == (1, 403, "HTTP 403")
    assert line["body"] == "intruder.test is not on this server's allow-list"


def test_fastapi_refuses_a_client_without_a_certificate(
    hello_servers: HelloServers, server_dir: Path
) -> None:
    """uvicorn with the reloading context requires a client certificate in the handshake."""
    port = hello_servers.port("fastapi")
    context = ssl.create_default_context(cafile=server_dir / CA)

    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(port, context)


def test_fastapi_server_and_httpx_client_follow_renewals_without_a_restart(
    tmp_path: Path, ca_state: Path
) -> None:
    """Two renewals of both leaves while the httpx client calls the FastAPI server (two
    uvicorn workers): no request fails, and each new certificate is served and presented by the
    processes started before it. How long each took is printed (-s or -rP shows it)."""
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    ca_cli.issue(ca_state, server_dir, "localhost")
    ca_cli.issue(ca_state, client_dir, "client.test")
    server_log, client_log = tmp_path / "server.log", tmp_path / "client.log"
    argv = [
        str(BIN / "hello-mtls-client"),
        "--library=httpx",
        f"--cert-dir={client_dir}",
        "--interval=0.02",
        f"--check-interval={CHECK_INTERVAL}",
    ]
    renewed: list[tuple[str, str]] = []
    workers = 2

    def renew() -> None:
        server_serial = ca_cli.issue(ca_state, server_dir, "localhost")
        seconds = elapsed_until(
            f"both uvicorn workers to load server serial {server_serial}",
            lambda: _loaded(server_log, server_serial) >= workers,
            timeout=60,
            interval=0.05,
        )
        print(f"server serial {server_serial}: every worker serves it after {seconds:.2f} s")
        # The client keeps its keep-alive connection until its own leaf changes: only the
        # connection it opens then, to workers that all serve the new leaf, must show it.
        client_serial = ca_cli.issue(ca_state, client_dir, "client.test")
        renewed.append((server_serial, client_serial))
        seconds = elapsed_until(
            f"the client to present serial {client_serial} and be served {server_serial}",
            lambda: _last_serials(client_log) == (server_serial, client_serial),
            timeout=60,
            interval=0.05,
        )
        print(f"client serial {client_serial}: presented and answered after {seconds:.2f} s")

    with hello_server(
        server_dir, server_log, "--stack=fastapi", check_interval=CHECK_INTERVAL, workers=workers
    ) as port:
        with running([*argv, f"--url=https://localhost:{port}/"], client_log) as client:
            wait_until(
                "the client's first answer", lambda: _answers(client_log), timeout=30, interval=0.05
            )
            for _ in range(2):
                renew()
            assert client.poll() is None
            assert stop(client) == 0

    output = client_log.read_text().splitlines()
    lines = [json.loads(line) for line in output if line.startswith("{")]
    assert [line for line in lines if line["error"] is not None] == []
    assert lines[-1]["server_serial"] == renewed[-1][0]
    assert lines[-1]["client_serial"] == renewed[-1][1]
    served = {line["server_serial"] for line in lines}
    presented = {line["client_serial"] for line in lines}
    assert {s for s, _ in renewed} <= served and {c for _, c in renewed} <= presented
    assert sum(RELOADED in line for line in output) >= 2
    # Each worker follows the directory on its own watcher thread: a reload per renewal.
    assert server_log.read_text().count(RELOADED) >= len(renewed) * workers
    assert client_context(client_dir).certificate.serial == renewed[-1][1]


def _answers(client_log: Path) -> list[dict[str, object]]:
    """The client's JSON lines so far; one it is still writing waits for the next look."""
    written = client_log.read_text().rpartition("\n")[0]
    return [json.loads(line) for line in written.splitlines() if line.startswith("{")]


def _last_serials(client_log: Path) -> tuple[object, object] | None:
    """The server and client serial of the client's last answer."""
    answers = _answers(client_log)
    return (answers[-1]["server_serial"], answers[-1]["client_serial"]) if answers else None


def _loaded(server_log: Path, serial: str) -> int:
    """How many server processes logged loading (at start or on a reload) leaf ``serial``."""
    return server_log.read_text().count(f"certificate localhost serial {serial} ")
