"""Two trust domains made by two ``hello-mtls-ca`` states, the real example server of one and
the real example client of the other on 127.0.0.1: a client of a federated trust domain is
answered only when the server allows it, each side checks the other against the other's own
bundle (a ``federated-<trust domain>.crt`` beside ``ca.crt``), the bundles reload with the
directory, and a certificate that the other trust domain's CA signs for our trust domain is
refused."""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import ca_cli
from harness.processes import hello_client, hello_server
from harness.waiting import wait_until
from mtls_ca.state import DirectoryStore
from mtls_context.layout import federated_bundle, read_version, write_version

OURS, OTHER = "ours.example", "other.example"
SERVER_ID = f"spiffe://{OURS}/ns/default/sa/hello"
SHOP = f"spiffe://{OTHER}/ns/shop/*"


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    states = {}
    for domain in (OURS, OTHER):
        states[domain] = tmp_path_factory.mktemp(domain) / "state"
        ca_cli.init(states[domain], f"--trust-domain={domain}")
    return states


def issue(states: dict[str, Path], domain: str, out: Path, namespace: str, account: str) -> Path:
    """A workload's directory from ``domain``'s CA, trusting the other trust domain beside."""
    name = f"{account}.{namespace}.svc"
    ca_cli.ca(
        "issue",
        f"--state={states[domain]}",
        f"--name={name}",
        f"--namespace={namespace}",
        f"--service-account={account}",
        f"--out={out}",
    )
    federate(out, states, next(d for d in states if d != domain))
    return out


def federate(directory: Path, states: dict[str, Path], domain: str) -> None:
    """Publish a new version of ``directory`` with ``domain``'s roots as its federated bundle."""
    roots = DirectoryStore(states[domain]).load().bundle_pem
    write_version(directory, {**read_version(directory), federated_bundle(domain): roots})


def defederate(directory: Path, domain: str) -> None:
    files = read_version(directory)
    del files[federated_bundle(domain)]
    write_version(directory, files)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, states: dict[str, Path]
) -> Iterator[tuple[int, Path, Path]]:
    directory = issue(states, OURS, tmp_path_factory.mktemp("server") / "certs", "default", "hello")
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with hello_server(directory, log, f"--allow={SHOP}", check_interval=0.2) as port:
        yield port, directory, log


def call(port: int, cert_dir: Path, *server_id: str) -> dict[str, object]:
    server_ids = (f"--server-id={s}" for s in server_id)
    _, [answer] = hello_client(f"https://127.0.0.1:{port}/", cert_dir, *server_ids)
    return answer


def test_an_allowed_client_of_the_federated_trust_domain_is_answered(
    server: tuple[int, Path, Path], states: dict[str, Path], tmp_path: Path
) -> None:
    port, _, _ = server
    web = issue(states, OTHER, tmp_path / "web", "shop", "web")
    answer = call(port, web, SERVER_ID)
    assert answer["status"] == 200, answer
    assert answer["body"] == f"Hello, spiffe://{OTHER}/ns/shop/sa/web!"


def test_a_client_of_the_federated_trust_domain_not_allowed_is_refused(
    server: tuple[int, Path, Path], states: dict[str, Path], tmp_path: Path
) -> None:
    port, _, _ = server
    admin = issue(states, OTHER, tmp_path / "admin", "admin", "root")
    answer = call(port, admin, SERVER_ID)
    assert answer["status"] is None and "alert" in str(answer["error"]).lower(), answer


def test_the_client_refuses_a_server_with_another_identity(
    server: tuple[int, Path, Path], states: dict[str, Path], tmp_path: Path
) -> None:
    port, _, _ = server
    web = issue(states, OTHER, tmp_path / "web", "shop", "web")
    answer = call(port, web, f"spiffe://{OURS}/ns/default/sa/other")
    assert "CERTIFICATE_VERIFY_FAILED" in str(answer["error"]), answer
    assert "unable to get local issuer" in str(call(port, web)["error"])  # our CA only


def test_the_federated_bundle_reloads_with_the_directory(
    server: tuple[int, Path, Path], states: dict[str, Path], tmp_path: Path
) -> None:
    port, directory, _ = server
    web = issue(states, OTHER, tmp_path / "web", "shop", "web")

    def answered() -> bool:
        return call(port, web, SERVER_ID)["status"] == 200

    defederate(directory, OTHER)
    try:
        wait_until("a de-federated client to be refused", lambda: not answered(), 30, 0.2)
    finally:
        federate(directory, states, OTHER)
    wait_until("the federated client to be answered again", answered, 30, 0.2)


def test_a_certificate_their_ca_signs_for_our_trust_domain_is_refused(
    server: tuple[int, Path, Path], states: dict[str, Path], tmp_path: Path
) -> None:
    port, _, log = server
    # other.example's own signing CA, as its CA process holds it, signs one of OUR identities.
    theirs = DirectoryStore(states[OTHER]).load().signer
    forged = theirs.issue(
        "client.default.svc",
        uris=[f"spiffe://{OURS}/ns/default/sa/client"],
        valid_for=datetime.timedelta(hours=1),
    )
    assert forged.key_pem is not None
    pem = tmp_path / "forged.pem"
    pem.write_bytes(forged.chain_pem + forged.key_pem)
    attacker = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # the stdlib, not our library
    attacker.check_hostname, attacker.verify_mode = False, ssl.CERT_NONE
    attacker.load_cert_chain(pem)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with attacker.wrap_socket(raw) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            # TLS 1.3: the server checks the client certificate after the client has finished.
            with pytest.raises(ssl.SSLError, match="ALERT_HANDSHAKE_FAILURE"):
                tls.recv(1024)
    vouched = f"other.example vouches for spiffe://{OURS}/ns/default/sa/client"
    wait_until("the server to log why", lambda: vouched in log.read_text(), 10, 0.1)
