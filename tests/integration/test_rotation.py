"""Rotation under load: clients loop for the whole test while leaves and the root rotate."""

import contextlib
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from certdirs import Issuer, publish, serial_of
from mtls_context.identity import serial
from processes import BIN, hello_server, running, stop

CHECK_INTERVAL = 0.5
CLIENTS = 3
LEAF_ROTATIONS = 10
# A new version is on disk; every process sees it by its next check (plus a busy machine's slack).
SETTLE = CHECK_INTERVAL * 3


def served_serial(port: int, trusted: list[Issuer], client: trustme.LeafCert) -> str:
    """The serial the server presents on a brand-new connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for issuer in trusted:
        issuer.root.configure_trust(context)
    client.configure_cert(context)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert tls.recv(4096).startswith(b"HTTP/1.1 200 ")  # TLS 1.3: refusals arrive here
            cert = tls.getpeercert()
            assert cert is not None
            return serial(cert)


class Fleet:
    """The server's and the clients' certificate directories, rotated together."""

    def __init__(self, root: Path, issuer: Issuer) -> None:
        self.server_dir = root / "server"
        self.client_dirs = [root / f"client-{i}" for i in range(CLIENTS)]
        self.signer = issuer
        self.trusted = [issuer]
        self.server_leaf = self.client_leaf = issuer.issue("localhost")
        self.reissue()

    def reissue(self) -> str:
        """New leaves for everybody from the current signer; returns the server's new serial."""
        self.server_leaf = self.signer.issue("localhost")
        publish(self.server_dir, self.server_leaf, self.trusted)
        for i, directory in enumerate(self.client_dirs):
            self.client_leaf = self.signer.issue(f"client-{i}.test")
            publish(directory, self.client_leaf, self.trusted)
        return serial_of(self.server_leaf)

    def trust(self, issuers: list[Issuer]) -> None:
        """Same leaves, new bundle."""
        self.trusted = issuers
        publish(self.server_dir, self.server_leaf, issuers)
        for directory in self.client_dirs:
            publish(directory, self.client_leaf, issuers)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path, Issuer())


@pytest.fixture
def server(fleet: Fleet, tmp_path: Path) -> Iterator[int]:
    with hello_server(
        fleet.server_dir, tmp_path / "server.log", check_interval=CHECK_INTERVAL, workers=2
    ) as port:
        yield port


def test_rotations_under_load_fail_no_request(fleet: Fleet, server: int, tmp_path: Path) -> None:
    logs = [tmp_path / f"client-{i}.jsonl" for i in range(CLIENTS)]
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
        delays = []

        def rotate_leaves(times: int) -> None:
            for _ in range(times):
                new_serial = fleet.reissue()
                written = time.monotonic()
                while served_serial(server, fleet.trusted, fleet.client_leaf) != new_serial:
                    assert time.monotonic() - written < CHECK_INTERVAL + 2.0, "not served"
                    time.sleep(0.02)
                delays.append(time.monotonic() - written)
                time.sleep(SETTLE)

        old = fleet.signer
        new = Issuer()
        rotate_leaves(LEAF_ROTATIONS // 2)
        fleet.trust([old, new])  # 1. everybody trusts both roots
        time.sleep(SETTLE)
        fleet.signer = new  # 2. leaves from the new root
        rotate_leaves(1)
        fleet.trust([new])  # 3. the old root is dropped
        time.sleep(SETTLE)
        rotate_leaves(LEAF_ROTATIONS - LEAF_ROTATIONS // 2)

        with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
            served_serial(server, [new], old.issue("straggler.test"))
        for proc in clients:
            assert stop(proc) == 0

    lines = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    failures = [line for line in lines if line["error"] is not None]
    assert failures == []
    assert len(lines) > 100 * CLIENTS
    assert len({line["client_serial"] for line in lines}) > LEAF_ROTATIONS * CLIENTS
    assert max(delays) <= CHECK_INTERVAL + 0.5
