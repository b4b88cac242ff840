"""The CA under an organisation's root made by a tool we did not write: ``openssl req -x509`` is
the organisation's offline root and ``openssl ca`` signs for it. Real ``hello-mtls-ca serve``
processes (gunicorn) sign under it; real TLS clients that trust the organisation's root alone
verify what they serve, and ``openssl verify`` checks the chains.

The signer's TokenReview is the stand-in of `harness.token_review_api`, as in
``test_ca_signers``.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
from pathlib import Path

import pytest
import requests
from cryptography import x509

from harness import ca_cli
from harness.ca_service import Service, credential_session, root_holder_and_signer
from harness.waiting import accepts, wait_until
from mtls_context import layout
from support.csrs import csr_pem
from support.org_ca import OrgCA, openssl_verify


def tls_handshake(port: int, root: Path) -> list[str]:
    """A real TLS client that trusts ``root`` alone: the served certificate's DNS names."""
    context = ssl.create_default_context(cafile=str(root))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    return list(names.value.get_values_for_type(x509.DNSName))


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> OrgCA:
    return OrgCA(tmp_path_factory.mktemp("org"), "Example Root")


@pytest.fixture(scope="module")
def offline(org: OrgCA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA whose signing CA ``openssl ca`` signed from its CSR, and the operator's credential
    in ``prov``."""
    pki = tmp_path_factory.mktemp("offline")
    state = pki / "state"
    ca_cli.ca("init", f"--state={state}", "--upstream-csr", str(pki / "ca.csr"))
    org.sign(pki / "ca.csr", pki / "signing.crt")
    ca_cli.ca("import", f"--state={state}", str(pki / "signing.crt"), "--chain", str(org.root))
    ca_cli.ca("provisioner", f"--state={state}", "--name=operator", f"--out={pki / 'prov'}")
    return pki


def _sign(session: requests.Session, url: str) -> dict[str, str]:
    body = {"csr": csr_pem(), "names": ["web.demo"], "namespace": "demo", "duration": "1h"}
    answer = session.post(f"{url}/sign", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    result: dict[str, str] = answer.json()
    return result


def test_leaves_of_the_served_ca_verify_against_the_org_root_alone(
    org: OrgCA, offline: Path, tmp_path: Path
) -> None:
    assert (offline / "prov" / layout.CA).read_bytes() == org.root.read_bytes()
    service = Service(offline / "state", tmp_path / "serve.log")
    try:
        assert "localhost" in tls_handshake(service.port, org.root)
        answer = _sign(credential_session(offline, "prov"), service.url)
        assert answer["ca"] == org.root.read_text()
        assert openssl_verify(org.root, answer["certificate"], tmp_path).endswith(": OK")
        status = credential_session(offline, "prov").get(f"{service.url}/status", timeout=10)
        chain = status.json()["chain"]
        assert [c["role"] for c in chain] == ["signing", "root"]
        assert chain[1]["subject"] == "CN=Example Root,O=Example Corp"
    finally:
        service.stop()


def test_a_signer_gets_the_imported_signing_ca_and_its_chain_reaches_the_org_root(
    org: OrgCA, offline: Path, tmp_path: Path
) -> None:
    with root_holder_and_signer(offline / "state", tmp_path, org.root) as (_, signer):
        assert "localhost" in tls_handshake(signer.port, org.root)
        answer = _sign(credential_session(offline, "prov"), signer.url)
        chain = x509.load_pem_x509_certificates(answer["certificate"].encode())
        signing = x509.load_pem_x509_certificate((offline / "signing.crt").read_bytes())
        assert chain[1] == signing
        assert openssl_verify(org.root, answer["certificate"], tmp_path).endswith(": OK")


def test_import_refuses_what_openssl_signed_as_no_ca(org: OrgCA, tmp_path: Path) -> None:
    state = tmp_path / "state"
    ca_cli.ca("init", f"--state={state}", "--upstream-csr", str(tmp_path / "ca.csr"))
    org.sign(tmp_path / "ca.csr", tmp_path / "leaf.crt", "not_a_ca")
    done = ca_cli.run("import", f"--state={state}", str(tmp_path / "leaf.crt"), "--chain",
                      str(org.root))  # fmt: skip
    assert done.returncode == 1
    assert "is not a CA certificate (basicConstraints CA:FALSE)" in done.stderr
    done = ca_cli.run("import", f"--state={state}", str(tmp_path / "leaf.crt"))
    assert "give the organisation's chain up to and including its root" in done.stderr
    assert not (state / "state.json").exists()


def _bundle(url: str, root: Path) -> dict[str, object]:
    session = requests.Session()
    session.trust_env = False
    answer: dict[str, object] = session.get(
        f"{url}/spiffe-bundle", verify=str(root), timeout=10
    ).json()
    return answer


def test_a_root_on_a_volume_and_a_new_root_given_later(tmp_path: Path) -> None:
    first = OrgCA(tmp_path / "org1", "Example Root")
    volume = first.issuing_ca(tmp_path / "volume")
    state = tmp_path / "state"
    args = ["--create-if-missing", f"--upstream-dir={volume}"]
    service = Service(state, tmp_path / "serve.log", *args)
    try:
        assert "localhost" in tls_handshake(service.port, first.root)
        status = json.loads(ca_cli.ca("status", f"--state={state}"))
        assert [c["role"] for c in status["chain"]] == ["signing", "organisation", "root"]
        assert status["upstream"] == "volume"
        before = _bundle(service.url, first.root)["spiffe_sequence"]
    finally:
        service.stop()
    ca_cli.ca("issue", f"--state={state}", "--name=web.demo.svc", f"--out={tmp_path / 'leaf'}")
    chain = (tmp_path / "leaf" / layout.CERT).read_text()
    assert openssl_verify(first.root, chain, tmp_path).endswith(": OK")

    second = OrgCA(tmp_path / "org2", "Example Root 2")
    shutil.rmtree(volume)
    second.issuing_ca(volume)
    service = Service(state, tmp_path / "serve2.log", *args)
    try:
        status = json.loads(ca_cli.ca("status", f"--state={state}"))
        assert status["phase"] == "both-trusted"
        assert [r["subject"] for r in status["roots"]] == [
            "CN=Example Root,O=Example Corp",
            "CN=Example Root 2,O=Example Corp",
        ]
        bundle = _bundle(service.url, first.root)
        assert bundle["spiffe_sequence"] == before + 1  # type: ignore[operator]
        assert len(bundle["keys"]) == 2  # type: ignore[arg-type]
        # The old root still signs until the rotation moves on, and its leaves still verify.
        wait_until(
            "the CA to serve under the first root",
            lambda: "localhost" in tls_handshake(service.port, first.root),
            10,
            0.2,
        )
    finally:
        service.stop()


def _healthy(service: Service, root: Path) -> bool:
    session = requests.Session()
    session.trust_env = False
    try:
        return session.get(f"{service.url}/healthz", verify=str(root), timeout=5).ok
    except requests.RequestException:
        return False


def test_signers_wait_for_the_import_and_then_serve_by_themselves(
    org: OrgCA, tmp_path: Path
) -> None:
    """Offline mode's first start, as the chart runs it: the root holder writes its CSR and
    waits; a signer, with no roots to trust it by yet (the operator's credential Secret comes
    after the import) and no root holder to reach, waits too instead of exiting, and says so;
    after ``import`` both serve without a restart."""
    state, prov = tmp_path / "state", tmp_path / "prov"
    with root_holder_and_signer(
        state, tmp_path, prov / layout.CA, "--upstream-offline", wait=False
    ) as (holder, signer):
        wait_until(
            "the signer to say it waits",
            lambda: (
                "waiting for the signing material, not serving yet: no roots to trust"
                in signer.log.read_text()
            ),
            30,
            0.2,
        )
        wait_until("the root holder's CSR", (state / "upstream.csr").is_file, 30, 0.2)
        awaiting = json.loads(ca_cli.ca("status", f"--state={state}"))
        assert awaiting["phase"] == "awaiting-import" and awaiting["chain"] == []
        assert "hello-mtls-ca import" in awaiting["warnings"][0]
        assert signer.process.poll() is None, signer.log.read_text()[-2000:]
        assert not accepts(signer.port)

        org.sign(state / "upstream.csr", tmp_path / "signing.crt")
        ca_cli.ca("import", f"--state={state}", str(tmp_path / "signing.crt"), "--chain",
                  str(org.root))  # fmt: skip
        ca_cli.ca("provisioner", f"--state={state}", "--name=operator", f"--out={prov}")
        wait_until("the signer to serve", lambda: _healthy(signer, org.root), 60, 0.5)
        assert holder.process.poll() is None and signer.process.poll() is None
        assert "got the signing material from" in signer.log.read_text()
        answer = _sign(credential_session(tmp_path, "prov"), signer.url)
        assert openssl_verify(org.root, answer["certificate"], tmp_path).endswith(": OK")
