"""Revocation on the real ``hello-mtls-ca`` (CLI and ``serve``): an admin revokes over HTTPS,
the operator may not, the CRL served passes ``openssl crl -verify``, ``openssl verify
-crl_check`` and pkilint's RFC 5280 CRL validation, and the revoked key is not signed again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness import ca_cli
from harness.ca_cli import ca as cli
from harness.ca_service import (
    Service,
    credential_session,
    init_with_provisioner,
    root_holder_and_signer,
)
from harness.waiting import wait_until
from mtls_ca.revocation import load_crls
from mtls_context import layout
from support.csrs import csr_pem

LINT_CRL = Path(sys.executable).parent / "lint_crl"


def _sign(
    service: Service, pki: Path, key: ec.EllipticCurvePrivateKey, name: str
) -> dict[str, str]:
    body = {
        "csr": csr_pem(key),
        "names": [name],
        "namespace": "shop",
        "service_account": name.split(".")[0],
    }
    answer = credential_session(pki, "prov").post(f"{service.url}/sign", json=body, timeout=30)
    assert answer.status_code in (200, 403), answer.text
    return {"status": str(answer.status_code), **answer.json()}


def _openssl_verify(
    directory: Path, leaf_chain: str, crl: Path, roots: Path
) -> subprocess.CompletedProcess[str]:
    leaf, intermediate = (
        c.public_bytes(serialization.Encoding.PEM)
        for c in x509.load_pem_x509_certificates(leaf_chain.encode())
    )
    (directory / "leaf.pem").write_bytes(leaf)
    (directory / "intermediate.pem").write_bytes(intermediate)
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-crl_check",
            "-CAfile",
            str(roots),
            "-untrusted",
            str(directory / "intermediate.pem"),
            "-CRLfile",
            str(crl),
            str(directory / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_admin_revokes_and_openssl_and_pkilint_agree(
    ca_service: Service, pki: Path, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    web = _sign(ca_service, pki, key, "web.shop.svc")
    db = _sign(ca_service, pki, ec.generate_private_key(ec.SECP256R1()), "db.shop.svc")
    body = {"identity": "spiffe://cluster.local/ns/shop/sa/web", "reason": "keyCompromise"}
    operator = credential_session(pki, "prov").post(
        f"{ca_service.url}/revoke", json=body, timeout=30
    )
    assert operator.status_code == 403 and "may not revoke (admins may)" in operator.text
    admin = credential_session(pki, "alice")
    answer = admin.post(f"{ca_service.url}/revoke", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert [r["serial"] for r in answer.json()["revoked"]] == [web["serial"]]

    served = credential_session(pki, None).get(f"{ca_service.url}/crl", timeout=30)
    assert served.status_code == 200
    crl = tmp_path / "ca.crl"
    crl.write_bytes(served.content)
    (one,) = load_crls(served.content)
    assert one.get_revoked_certificate_by_serial_number(int(web["serial"], 16)) is not None

    (tmp_path / "web").mkdir()
    (tmp_path / "db").mkdir()
    revoked = _openssl_verify(tmp_path / "web", web["certificate"], crl, pki / "prov" / layout.CA)
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr
    kept = _openssl_verify(tmp_path / "db", db["certificate"], crl, pki / "prov" / layout.CA)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    intermediate = tmp_path / "web" / "intermediate.pem"
    signature = subprocess.run(
        ["openssl", "crl", "-in", str(crl), "-noout", "-verify", "-CAfile", str(intermediate)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "verify OK" in signature.stdout + signature.stderr

    lint = subprocess.run(
        [str(LINT_CRL), "lint", "-t", "CRL", "-p", "PKIX", "-s", "ALL", "-f", "JSON", str(crl)],
        capture_output=True,
        text=True,
        check=False,
    )
    results = json.loads(lint.stdout)["results"]
    assert len(results) > 20  # it did validate the CRL ...
    assert [r for r in results if r["finding_descriptions"]] == []  # ... and found nothing

    again = _sign(ca_service, pki, key, "web.shop.svc")
    assert again["status"] == "403" and "was revoked (keyCompromise)" in again["error"]
    assert (
        _sign(ca_service, pki, ec.generate_private_key(ec.SECP256R1()), "web.shop.svc")["status"]
        == "200"
    )


def test_the_cli_revokes_a_certificate_the_index_does_not_know(tmp_path: Path) -> None:
    cli("init", "--state", str(tmp_path / "state"))
    cli(
        "issue",
        "--state",
        str(tmp_path / "state"),
        "--name",
        "a.demo",
        "--out",
        str(tmp_path / "a"),
    )
    (tmp_path / "state" / "issued.jsonl").unlink()  # as before the index existed
    by_name = ca_cli.run("revoke", "--state", str(tmp_path / "state"), "--identity", "a.demo")
    assert by_name.returncode == 1 and "revoke it with --cert" in by_name.stderr
    done = ca_cli.run("revoke", "--state", str(tmp_path / "state"), "--cert", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    serial = json.loads(done.stdout)["revoked"][0]["serial"]
    crl = cli("crl", "--state", str(tmp_path / "state")).encode()
    leaf = x509.load_pem_x509_certificates((tmp_path / "a" / layout.CERT).read_bytes())[0]
    assert f"{leaf.serial_number:x}" == serial
    assert load_crls(crl)[0].get_revoked_certificate_by_serial_number(leaf.serial_number)


def test_the_cli_revokes_the_certificate_on_its_standard_input(tmp_path: Path) -> None:
    """``--cert -``: how ``hello-mtls revoke --cert`` hands a local file to the CA's pod."""
    state = str(tmp_path / "state")
    cli("init", "--state", state)
    cli("issue", "--state", state, "--name", "b.demo", "--out", str(tmp_path / "b"))
    pem = (tmp_path / "b" / layout.CERT).read_text()
    done = ca_cli.run(
        "revoke", "--state", state, "--cert", "-", "--reason", "keyCompromise", stdin=pem
    )
    assert done.returncode == 0, done.stderr
    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    assert json.loads(done.stdout)["revoked"][0]["serial"] == f"{leaf.serial_number:x}"
    stranger = ca_cli.run("revoke", "--state", state, "--cert", "-", stdin="not a certificate")
    assert stranger.returncode == 1
    assert "standard input holds no PEM or DER certificate" in stranger.stderr


def test_a_signer_refuses_the_revoked_key_and_serves_the_new_crl(tmp_path: Path) -> None:
    # The revocation list and the CRLs travel in the signing material: what the signer pods
    # (ca.signers.replicas) must refuse and serve follows the root holder's within a fetch.
    init_with_provisioner(tmp_path, admin="alice")
    with root_holder_and_signer(tmp_path / "state", tmp_path, tmp_path / "prov" / layout.CA) as (
        _,
        signer,
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        signed = _sign(signer, tmp_path, key, "web.shop.svc")
        assert signed["status"] == "200"
        # By its PEM, which needs no index: whether the signer's report arrived or not
        # (by identity and namespace: tests/integration/test_ca_signers.py).
        (tmp_path / "web.pem").write_text(signed["certificate"])
        cli("revoke", "--state", str(tmp_path / "state"), "--cert", str(tmp_path / "web.pem"))
        reader = credential_session(tmp_path, None)

        def lists_it() -> bool:
            crls = load_crls(reader.get(f"{signer.url}/crl", timeout=10).content)
            return any(
                c.get_revoked_certificate_by_serial_number(int(signed["serial"], 16)) for c in crls
            )

        wait_until("the signer to serve the new CRL", lists_it, 30, 0.2)
        again = _sign(signer, tmp_path, key, "web.shop.svc")
        assert again["status"] == "403" and "was revoked" in again["error"]
        revoke = credential_session(tmp_path, "alice").post(
            f"{signer.url}/revoke", json={"namespace": "shop"}, timeout=10
        )
        assert revoke.status_code == 404  # the root holder revokes
