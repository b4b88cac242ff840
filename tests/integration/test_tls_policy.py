"""What the real server refuses: missing, foreign or expired client certificates, old protocol
versions and weak cipher suites. Each refusal has a twin that the same client gets through.
Last, the CA's own profile, carried by the certificate directory, changes what the server
accepts."""

import json
import socket
import ssl
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from harness import ca_cli
from harness.processes import hello_server
from harness.waiting import wait_until
from mtls_ca.state import DirectoryStore
from mtls_context.layout import CA, CERT, KEY, POLICY
from support.certdirs import INTERMEDIATE, MODERN, Issuer, publish

CHECK_INTERVAL = 0.2
RELOADED = ": reloaded, now certificate"
SetPolicy = Callable[[dict[str, str]], None]
RSA = trustme.KeyType.RSA


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="module")
def server_leaf(issuer: Issuer) -> trustme.LeafCert:
    # RSA, so that suites without ECDHE (RSA key exchange) would be possible at all.
    return issuer.issue("localhost", key_type=RSA)


@pytest.fixture(scope="module")
def server_dir(
    tmp_path_factory: pytest.TempPathFactory, issuer: Issuer, server_leaf: trustme.LeafCert
) -> Path:
    directory = tmp_path_factory.mktemp("server")
    publish(directory, server_leaf, [issuer])
    return directory


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "server.log"


@pytest.fixture(scope="module")
def server(server_dir: Path, server_log: Path) -> Iterator[int]:
    with hello_server(server_dir, server_log, check_interval=CHECK_INTERVAL) as port:
        yield port


@pytest.fixture
def policy(
    server: int,
    server_log: Path,
    server_dir: Path,
    issuer: Issuer,
    server_leaf: trustme.LeafCert,
) -> Iterator[SetPolicy]:
    """Set the server's TLS policy for one test (a new directory version), then restore it."""

    def use(policy: dict[str, str]) -> None:
        reloads = _reloads(server_log)
        publish(server_dir, server_leaf, [issuer], policy)
        # The server's one worker logs each version it loads; later connections get that one.
        wait_until(
            "the server to load the new TLS policy",
            lambda: len(_reloads(server_log)) > len(reloads),
            timeout=30,
            interval=0.05,
        )

    yield use
    use(INTERMEDIATE)


@pytest.fixture(scope="module")
def client_leaf(issuer: Issuer) -> trustme.LeafCert:
    return issuer.issue("client.test")


def get(
    port: int,
    issuer: Issuer,
    leaf: trustme.LeafCert | None,
    *,
    versions: tuple[ssl.TLSVersion, ssl.TLSVersion] | None = None,
    ciphers: str | None = None,
) -> str:
    """One HTTPS request with a plain ``ssl`` client; returns the status line."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    issuer.root.configure_trust(context)
    if leaf is not None:
        leaf.configure_cert(context)
    return request(port, context, versions=versions, ciphers=ciphers)


def request(
    port: int,
    context: ssl.SSLContext,
    *,
    versions: tuple[ssl.TLSVersion, ssl.TLSVersion] | None = None,
    ciphers: str | None = None,
) -> str:
    if ciphers is not None or versions is not None:
        # Let this client offer what OpenSSL's default security level would refuse to offer.
        context.set_ciphers(f"{ciphers or 'DEFAULT'}:@SECLEVEL=0")
    if versions is not None:
        with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version, context.maximum_version = versions
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            return tls.recv(4096).split(b"\r\n", 1)[0].decode()


def test_client_with_certificate_gets_a_hello(
    server: int, issuer: Issuer, client_leaf: trustme.LeafCert
) -> None:
    assert get(server, issuer, client_leaf) == "HTTP/1.1 200 OK"


def test_no_client_certificate_is_refused(server: int, issuer: Issuer) -> None:
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
        get(server, issuer, None)


def test_expired_client_certificate_is_refused(server: int, issuer: Issuer) -> None:
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_EXPIRED"):
        get(server, issuer, issuer.issue("client.test", expired=True))


def test_client_certificate_from_another_ca_is_refused(server: int, issuer: Issuer) -> None:
    with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
        get(server, issuer, Issuer().issue("client.test"))


TLS = ssl.TLSVersion


@pytest.mark.parametrize("version", [TLS.TLSv1, TLS.TLSv1_1])
def test_tls_10_and_11_are_refused(
    server: int, issuer: Issuer, client_leaf: trustme.LeafCert, version: ssl.TLSVersion
) -> None:
    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):
        get(server, issuer, client_leaf, versions=(version, version))


@pytest.mark.parametrize("version", [TLS.TLSv1_2, TLS.TLSv1_3])
def test_tls_12_and_13_are_accepted_under_intermediate(
    server: int, issuer: Issuer, client_leaf: trustme.LeafCert, version: ssl.TLSVersion
) -> None:
    assert get(server, issuer, client_leaf, versions=(version, version)) == "HTTP/1.1 200 OK"


def test_modern_refuses_tls_12_and_accepts_tls_13(
    server: int, issuer: Issuer, client_leaf: trustme.LeafCert, policy: SetPolicy
) -> None:
    policy(MODERN)

    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):
        get(server, issuer, client_leaf, versions=(TLS.TLSv1_2, TLS.TLSv1_2))
    assert get(server, issuer, client_leaf, versions=(TLS.TLSv1_3, TLS.TLSv1_3)).endswith("200 OK")


WEAK = {"CBC only": "ECDHE-RSA-AES128-SHA256", "no ECDHE": "AES128-GCM-SHA256"}


@pytest.mark.parametrize("suite", WEAK.values(), ids=WEAK.keys())
def test_cbc_and_non_ecdhe_suites_are_refused(
    server: int, issuer: Issuer, client_leaf: trustme.LeafCert, suite: str
) -> None:
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
        get(server, issuer, client_leaf, versions=(TLS.TLSv1_2, TLS.TLSv1_2), ciphers=suite)


@pytest.mark.parametrize("suite", WEAK.values(), ids=WEAK.keys())
def test_the_same_suites_pass_when_the_policy_allows_them(
    server: int, issuer: Issuer, client_leaf: trustme.LeafCert, suite: str, policy: SetPolicy
) -> None:
    policy(dict(INTERMEDIATE, ciphers=f"{INTERMEDIATE['ciphers']}:{suite}"))

    status = get(server, issuer, client_leaf, versions=(TLS.TLSv1_2, TLS.TLSv1_2), ciphers=suite)

    assert status == "HTTP/1.1 200 OK"


def test_the_cas_profile_travels_to_the_server_and_decides(tmp_path: Path) -> None:
    """The CA's TLS profile reaches a running server only through the certificate directory:
    switched to modern, the CA's next issue makes the server refuse the TLS 1.2 client it
    served a moment before."""
    state, server_dir, client_dir = tmp_path / "ca", tmp_path / "server", tmp_path / "client"
    ca_cli.init(state)
    ca_cli.issue(state, server_dir, "localhost")
    ca_cli.issue(state, client_dir, "client.test")

    def tls(version: ssl.TLSVersion) -> str:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(client_dir / CA)
        context.load_cert_chain(client_dir / CERT, client_dir / KEY)
        return request(port, context, versions=(version, version))

    server_log = tmp_path / "server.log"
    with hello_server(server_dir, server_log, check_interval=CHECK_INTERVAL) as port:
        assert tls(TLS.TLSv1_2) == "HTTP/1.1 200 OK"

        DirectoryStore(state).update(lambda s: replace(s, tls_profile="modern"))
        ca_cli.issue(state, server_dir, "localhost")
        assert json.loads((server_dir / POLICY).read_bytes())["min_version"] == "TLSv1.3"
        wait_until(
            "the server to load the modern TLS policy",
            lambda: any("TLS policy modern" in line for line in _reloads(server_log)),
            timeout=30,
            interval=0.05,
        )

        with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):
            tls(TLS.TLSv1_2)
        assert tls(TLS.TLSv1_3) == "HTTP/1.1 200 OK"


def _reloads(server_log: Path) -> list[str]:
    """The server's log lines of a new version loaded."""
    return [line for line in server_log.read_text().splitlines() if RELOADED in line]
