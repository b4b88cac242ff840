"""A writer swaps certificate versions as fast as it can while clients keep connecting.

Version A is a server leaf from CA 1 with ca.crt = CA 1 + the clients' CA; version B is the same
from CA 2. A reader that combined files of two versions would pair a key with the wrong
certificate or a leaf with the wrong bundle: the reload would be refused (and logged), or a
handshake would fail.
"""

import socket
import ssl
import threading
import time
from pathlib import Path

from mtls_context import write_version
from mtls_context.identity import serial
from support.certdirs import Issuer, files, serial_of
from support.processes import hello_server

WRITE_SECONDS = 10.0
CLIENT_THREADS = 3


def test_clients_never_see_a_torn_version(tmp_path: Path) -> None:
    ca1, ca2, clients_ca = Issuer(), Issuer(), Issuer()
    leaf_a, leaf_b = ca1.issue("localhost"), ca2.issue("localhost")
    version_a = files(leaf_a, [ca1, clients_ca])
    version_b = files(leaf_b, [ca2, clients_ca])
    server_dir = tmp_path / "server"
    write_version(server_dir, version_a)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for issuer in (ca1, ca2):
        issuer.root.configure_trust(client)
    clients_ca.issue("client.test").configure_cert(client)

    stop = threading.Event()
    swaps = 0
    served: dict[str, int] = {}
    failures: list[str] = []

    def writer() -> None:
        nonlocal swaps
        while not stop.is_set():
            write_version(server_dir, version_b if swaps % 2 == 0 else version_a)
            swaps += 1

    def connect() -> None:
        while not stop.is_set():
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
        threads = [threading.Thread(target=writer)]
        threads += [threading.Thread(target=connect) for _ in range(CLIENT_THREADS)]
        for thread in threads:
            thread.start()
        time.sleep(WRITE_SECONDS)
        stop.set()
        for thread in threads:
            thread.join()

    assert failures == []
    assert swaps > 100
    assert set(served) == {serial_of(leaf_a), serial_of(leaf_b)}
    assert sum(served.values()) > 50
    assert "keeping" not in log.read_text()  # no reload ever saw a mixed or missing set


def test_the_same_writer_tears_naive_reads(tmp_path: Path) -> None:
    """The twin: opening tls.crt and tls.key by their visible names does mix versions."""
    ca1, ca2 = Issuer(), Issuer()
    versions = [files(ca1.issue("localhost"), [ca1]), files(ca2.issue("localhost"), [ca2])]
    write_version(tmp_path, versions[0])
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            write_version(tmp_path, versions[i % 2])

    thread = threading.Thread(target=writer)
    thread.start()
    mismatches = 0
    deadline = time.monotonic() + 3
    try:
        while time.monotonic() < deadline and not mismatches:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
            except ssl.SSLError as e:
                mismatches += "KEY_VALUES_MISMATCH" in str(e)
            except FileNotFoundError:
                pass
    finally:
        stop.set()
        thread.join()
    assert mismatches > 0
