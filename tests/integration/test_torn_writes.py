"""A writer swaps certificate versions as fast as it can while clients keep connecting.

The writer deletes the previous version right after each swap, as the kubelet does, so a reader
that pinned it finds its files gone and must read again (`read_version`'s retry: counted below).
Version A is a server leaf from CA 1 with ca.crt = CA 1 + the clients' CA; version B is the same
from CA 2. A reader that combined files of two versions would pair a key with the wrong
certificate or a leaf with the wrong bundle: the reload would be refused (and logged), or a
handshake would fail.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.processes import hello_server
from harness.waiting import wait_until
from mtls_context import layout
from mtls_context.identity import serial
from mtls_context.layout import read_version
from support.certdirs import INTERMEDIATE, Issuer, files, serial_of, write_like_kubelet

WRITE_SECONDS = 10.0
CLIENT_THREADS = 3


class Swapper(threading.Thread):
    """Inside ``with``: write the versions in turn, kubelet-style, as fast as it can."""

    def __init__(self, directory: Path, versions: Sequence[dict[str, bytes]]) -> None:
        super().__init__()
        self.directory, self.versions = directory, versions
        self.swaps = 0
        self.stopped = threading.Event()
        write_like_kubelet(directory, versions[0])

    def run(self) -> None:
        while not self.stopped.is_set():
            self.swaps += 1
            write_like_kubelet(self.directory, self.versions[self.swaps % len(self.versions)])

    def __enter__(self) -> Swapper:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.join()


def test_clients_never_see_a_torn_version(tmp_path: Path) -> None:
    ca1, ca2, clients_ca = Issuer(), Issuer(), Issuer()
    leaf_a, leaf_b = ca1.issue("localhost"), ca2.issue("localhost")
    server_dir = tmp_path / "server"
    swapper = Swapper(
        server_dir, [files(leaf_a, [ca1, clients_ca]), files(leaf_b, [ca2, clients_ca])]
    )
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for issuer in (ca1, ca2):
        issuer.root.configure_trust(client)
    clients_ca.issue("client.test").configure_cert(client)

    served: dict[str, int] = {}
    failures: list[str] = []

    def connect() -> None:
        while not swapper.stopped.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                    with client.wrap_socket(raw, server_hostname="localhost") as tls:
                        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        status = tls.recv(4096).split(b"\r\n", 1)[0]
                        cert = tls.getpeercert()
                assert status == b"HTTP/1.1 200 OK", status
                assert cert is not None
                key = serial(cert)
                served[key] = served.get(key, 0) + 1
            except (OSError, AssertionError) as e:
                failures.append(repr(e))

    log = tmp_path / "server.log"
    with hello_server(server_dir, log, check_interval=0.0) as port:
        clients = [threading.Thread(target=connect) for _ in range(CLIENT_THREADS)]
        with swapper:
            for thread in clients:
                thread.start()
            time.sleep(WRITE_SECONDS)
        for thread in clients:
            thread.join()

    assert failures == []
    assert swapper.swaps > 100
    assert set(served) == {serial_of(leaf_a), serial_of(leaf_b)}
    assert sum(served.values()) > 50
    assert "keeping" not in log.read_text()  # no reload ever saw a mixed or missing set


def test_a_reader_retries_when_its_version_is_deleted_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry path runs, and every read is one whole version."""
    ca1, ca2 = Issuer(), Issuer()
    versions = [
        files(ca1.issue("localhost"), [ca1], INTERMEDIATE),
        files(ca2.issue("localhost"), [ca2], INTERMEDIATE),
    ]
    looks = 0
    look = layout._data_target

    def counted(directory: Path) -> str | None:
        nonlocal looks
        looks += 1
        return look(directory)

    monkeypatch.setattr(layout, "_data_target", counted)
    reads, torn = 0, 0
    with Swapper(tmp_path, versions):
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            reads += 1
            torn += read_version(tmp_path) not in versions
    retries = (looks - 2 * reads) // 2  # every attempt looks at ..data twice
    assert torn == 0
    assert retries > 0, f"{reads} reads, none retried"


def test_the_same_writer_tears_naive_reads(tmp_path: Path) -> None:
    """The twin: opening tls.crt and tls.key by their visible names does mix versions."""
    ca1, ca2 = Issuer(), Issuer()
    versions = [files(ca1.issue("localhost"), [ca1]), files(ca2.issue("localhost"), [ca2])]

    def torn() -> bool:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
        except ssl.SSLError as e:
            return "KEY_VALUES_MISMATCH" in str(e)
        except FileNotFoundError:
            pass
        return False

    with Swapper(tmp_path, versions):
        wait_until("a naive read that mixes two versions", torn, 60, interval=0)
