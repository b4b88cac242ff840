"""The real ``hello-mtls-ca`` executable: what it issues passes ``openssl verify`` and real
mTLS handshakes on 127.0.0.1, and the wrong CA or the wrong name fails (trustme's negatives)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from harness import ca_cli
from mtls_context import layout


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    for state in ("ca", "other-ca"):
        assert ca_cli.run("init", "--state", str(root / state)).returncode == 0
    for state, out in (("ca", "server"), ("other-ca", "stranger")):
        done = ca_cli.run(
            "issue",
            "--state",
            str(root / state),
            "--name",
            "localhost",
            "--san",
            "127.0.0.1",
            "--out",
            str(root / out),
        )
        assert done.returncode == 0, done.stderr
    done = ca_cli.run(
        "issue",
        "--state",
        str(root / "ca"),
        "--name",
        "client.demo",
        "--namespace",
        "demo",
        "--out",
        str(root / "client"),
    )
    assert done.returncode == 0, done.stderr
    return root


def _openssl_verify(directory: Path, purpose: str) -> subprocess.CompletedProcess[str]:
    files = layout.read_version(directory)
    leaf, intermediate = x509.load_pem_x509_certificates(files[layout.CERT])
    (directory.parent / "leaf.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
    (directory.parent / "int.pem").write_bytes(intermediate.public_bytes(Encoding.PEM))
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            purpose,
            "-CAfile",
            str(directory / layout.CA),
            "-untrusted",
            str(directory.parent / "int.pem"),
            str(directory.parent / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_openssl_verifies_the_chain(pki: Path) -> None:
    for purpose in ("sslserver", "sslclient"):
        done = _openssl_verify(pki / "server", purpose)
        assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr
    # The negative twin: the leaf against another CA's bundle.
    (pki / "mixed").mkdir(exist_ok=True)
    for name in (layout.CERT, layout.KEY):
        (pki / "mixed" / name).write_bytes((pki / "server" / name).read_bytes())
    (pki / "mixed" / layout.CA).write_bytes((pki / "stranger" / layout.CA).read_bytes())
    assert _openssl_verify(pki / "mixed", "sslserver").returncode != 0


def _server_context(directory: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(directory / layout.CERT, directory / layout.KEY)
    ctx.load_verify_locations(directory / layout.CA)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _client_context(directory: Path, trust: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(trust / layout.CA))
    ctx.load_cert_chain(directory / layout.CERT, directory / layout.KEY)
    return ctx


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> str:
    """One mTLS handshake over 127.0.0.1; returns the client subject the server saw."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                cert = tls.getpeercert()
                assert cert is not None
                seen.append(repr(cert["subject"]))
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname=hostname) as tls:
                assert tls.recv(2) == b"ok"
    finally:
        thread.join(timeout=10)
        listener.close()
    return seen[0]


def test_mtls_handshake_works(pki: Path) -> None:
    server = _server_context(pki / "server")
    for hostname in ("localhost", "127.0.0.1"):
        client = _client_context(pki / "client", pki / "server")
        assert "('commonName', 'client.demo')" in _handshake(server, client, hostname)


def test_bad_hostname_fails(pki: Path) -> None:
    server = _server_context(pki / "server")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, _client_context(pki / "client", pki / "server"), "example.com")


def test_bad_ca_fails(pki: Path) -> None:
    # The client trusts another CA: it refuses our server.
    server = _server_context(pki / "server")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, _client_context(pki / "client", pki / "stranger"), "localhost")
    # The client's certificate comes from another CA: our server refuses it.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(server, _client_context(pki / "stranger", pki / "server"), "localhost")


def test_rsa_ca_and_leaves_verify_too(tmp_path: Path, pki: Path) -> None:
    assert (
        ca_cli.run("init", "--state", str(tmp_path / "rsa"), "--key-type", "rsa-2048").returncode
        == 0
    )
    for key_type in ("rsa-2048", "rsa-3072", "ecdsa-p256"):
        out = tmp_path / key_type
        done = ca_cli.run(
            "issue",
            "--state",
            str(tmp_path / "rsa"),
            "--name",
            "web.demo",
            "--key-type",
            key_type,
            "--out",
            str(out),
        )
        assert done.returncode == 0, done.stderr
        verified = _openssl_verify(out, "sslserver")
        assert verified.returncode == 0, verified.stderr
    # The twin: the same leaf against the ECDSA CA's bundle fails.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in (layout.CERT, layout.KEY):
        (mixed / name).write_bytes((tmp_path / "rsa-2048" / name).read_bytes())
    (mixed / layout.CA).write_bytes((pki / "server" / layout.CA).read_bytes())
    assert _openssl_verify(mixed, "sslserver").returncode != 0
