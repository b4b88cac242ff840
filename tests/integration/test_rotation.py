"""Rotation under load: clients loop for the whole test while hello-mtls-ca re-issues every
leaf again and again and rotates its root (both-trusted, new-signing, idle)."""

import contextlib
import json
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import ca_cli
from harness.processes import BIN, hello_server, running, stop
from harness.waiting import elapsed_until, wait_until
from mtls_context.identity import serial
from mtls_context.layout import CA, CERT, KEY, write_version

CHECK_INTERVAL = 0.5
CLIENTS = 3
WORKERS = 2
LEAF_ROTATIONS = 10
# Before the next rotation every server worker has loaded the new version and every client has
# called this many times with it: the root rotation's next phase is safe only once all hold it.
CALLS_PER_VERSION = 15
SERVER_LOG = "server.log"


class Fleet:
    """The CA state and the certificate directories of the server and its clients."""

    def __init__(self, root: Path) -> None:
        self.state = root / "ca"
        self.server_dir = root / "server"
        self.client_dirs = [root / f"client-{i}" for i in range(CLIENTS)]
        ca_cli.init(self.state)
        self.reissue()

    def reissue(self) -> str:
        """New leaves (and the current bundle) for everybody; returns the server's serial."""
        for i, directory in enumerate(self.client_dirs):
            ca_cli.issue(self.state, directory, f"client-{i}.test")
        return ca_cli.issue(self.state, self.server_dir, "localhost")

    def served_serial(self, port: int, cert_dir: Path | None = None) -> str:
        """The serial the server presents on a brand-new connection from a client."""
        cert_dir = cert_dir or self.client_dirs[0]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cert_dir / CA)
        context.load_cert_chain(cert_dir / CERT, cert_dir / KEY)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                status = tls.recv(4096)  # TLS 1.3: a refused client certificate surfaces here
                assert status.startswith(b"HTTP/1.1 200 "), status
                cert = tls.getpeercert()
                assert cert is not None
                return serial(cert)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


@pytest.fixture
def server(fleet: Fleet, tmp_path: Path) -> Iterator[int]:
    log = tmp_path / SERVER_LOG
    with hello_server(
        fleet.server_dir, log, check_interval=CHECK_INTERVAL, workers=WORKERS
    ) as port:
        yield port


def test_rotations_under_load_fail_no_request(fleet: Fleet, server: int, tmp_path: Path) -> None:
    logs = [tmp_path / f"client-{i}.jsonl" for i in range(CLIENTS)]
    old_state = tmp_path / "old-ca"
    shutil.copytree(fleet.state, old_state)
    delays: list[float] = []

    def settle() -> None:
        server_serial = ca_cli.serial(fleet.server_dir)
        wait_until(
            f"every server worker to load serial {server_serial}",
            lambda: _loaded(tmp_path / SERVER_LOG, server_serial) >= WORKERS,
            timeout=60,
            interval=0.1,
        )
        client_serials = [ca_cli.serial(directory) for directory in fleet.client_dirs]
        wait_until(
            f"{CALLS_PER_VERSION} calls of each client with its serial {client_serials}",
            lambda: all(
                _calls_with(log, serial) >= CALLS_PER_VERSION
                for log, serial in zip(logs, client_serials, strict=True)
            ),
            timeout=60,
            interval=0.1,
        )

    def rotate_leaves() -> None:
        new_serial = fleet.reissue()
        delays.append(
            elapsed_until(
                f"the server to serve serial {new_serial} on a new connection",
                lambda: fleet.served_serial(server) == new_serial,
                timeout=60,
                interval=0.02,
            )
        )
        settle()

    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(
                running(
                    [
                        str(BIN / "hello-mtls-client"),
                        f"--url=https://localhost:{server}/",
                        f"--cert-dir={directory}",
                        "--interval=0.02",
                        f"--check-interval={CHECK_INTERVAL}",
                    ],
                    log,
                )
            )
            for directory, log in zip(fleet.client_dirs, logs, strict=True)
        ]
        settle()
        for _ in range(LEAF_ROTATIONS - 3):
            rotate_leaves()
        for phase in ("idle", "both-trusted", "new-signing"):
            ca_cli.rotate_root(fleet.state, phase)
            rotate_leaves()  # distributes the new bundle, and leaves from the signing root

        straggler = tmp_path / "straggler"
        ca_cli.issue(old_state, straggler, "straggler.test")
        write_version(straggler, {**_files(straggler), CA: (fleet.server_dir / CA).read_bytes()})
        with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
            fleet.served_serial(server, straggler)
        for proc in clients:
            assert stop(proc) == 0

    output = [line for log in logs for line in log.read_text().splitlines()]
    lines = [json.loads(line) for line in output if line.startswith("{")]
    assert sum(": reloaded, now certificate" in line for line in output) >= LEAF_ROTATIONS * 3
    assert [line for line in lines if line["error"] is not None] == []
    assert len(lines) > 100 * CLIENTS
    assert len({line["client_serial"] for line in lines}) >= LEAF_ROTATIONS * CLIENTS
    assert len(delays) == LEAF_ROTATIONS
    # Served on the first new connection after the server's next check: reported, not asserted,
    # as a loaded machine delays the check and the handshakes alike.
    shown = ", ".join(f"{delay:.2f}" for delay in delays)
    print(f"new serial served after (s; check interval {CHECK_INTERVAL} s): {shown}")


def _loaded(server_log: Path, serial: str) -> int:
    """How many server workers logged loading (at start or on a reload) leaf ``serial``."""
    return server_log.read_text().count(f"certificate localhost serial {serial} ")


def _calls_with(client_log: Path, serial: str) -> int:
    """How many answers the client logged for calls that presented leaf ``serial``."""
    return client_log.read_text().count(f'"client_serial": "{serial}"')


def _files(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in (CERT, KEY)}
