"""Rotation under load: clients loop for the whole test while hello-mtls-ca re-issues every
leaf again and again and rotates its root (both-trusted, new-signing, idle)."""

import contextlib
import json
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtls_context import CA, CERT, KEY, write_version
from mtls_context.identity import serial
from support import ca_cli
from support.processes import BIN, hello_server, running, stop

CHECK_INTERVAL = 0.5
CLIENTS = 3
LEAF_ROTATIONS = 10
# A new version is on disk; every process has seen it after its next check (plus slack).
SETTLE = CHECK_INTERVAL * 3


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
    log = tmp_path / "server.log"
    with hello_server(fleet.server_dir, log, check_interval=CHECK_INTERVAL, workers=2) as port:
        yield port


def test_rotations_under_load_fail_no_request(fleet: Fleet, server: int, tmp_path: Path) -> None:
    logs = [tmp_path / f"client-{i}.jsonl" for i in range(CLIENTS)]
    old_state = tmp_path / "old-ca"
    shutil.copytree(fleet.state, old_state)
    delays: list[float] = []

    def rotate_leaves() -> None:
        new_serial = fleet.reissue()
        written = time.monotonic()
        while fleet.served_serial(server) != new_serial:
            assert time.monotonic() - written < CHECK_INTERVAL + 2.0, "new serial not served"
            time.sleep(0.02)
        delays.append(time.monotonic() - written)
        time.sleep(SETTLE)

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
        time.sleep(SETTLE)
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
    # Served on the first new connection after the server's next check; the slack is for a
    # handshake on a busy 2-core machine, not for the reload.
    assert max(delays) <= CHECK_INTERVAL + 1.0, delays


def _files(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in (CERT, KEY)}
