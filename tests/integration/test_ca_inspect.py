"""``hello-mtls-ca inspect`` as a user runs it: on a certificate directory the CA issued, on the
real CA service (which asks for a client certificate), and on ``openssl s_server`` (which does
not); its exit status and its JSON."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import ca_cli
from harness.ca_service import Service
from harness.processes import free_port, running
from harness.waiting import accepts, wait_until
from mtls_context import layout


@pytest.fixture(scope="module")
def pki(pki: Path) -> Path:
    """The conftest's, with a server's directory (``web``, web.demo.svc)."""
    ca_cli.ca(
        "issue",
        *("--state", str(pki / "state"), "--name", "web.demo.svc", "--namespace", "demo"),
        *("--out", str(pki / "web")),
    )
    return pki


def _inspect(*args: str) -> subprocess.CompletedProcess[str]:
    return ca_cli.run("inspect", *args)


def test_a_certificate_directory_verifies_against_its_own_bundle(pki: Path) -> None:
    done = _inspect(str(pki / "web"), "--namespace", "demo", "--name", "web.demo.svc")
    assert done.returncode == 0, done.stderr
    assert "SPIFFE ID   spiffe://cluster.local/ns/demo/sa/default" in done.stdout
    assert f"verified: yes, against {pki / 'web' / layout.CA}" in done.stdout
    assert "policy: passes for namespace 'demo'" in done.stdout


def test_json_and_the_exit_status_of_a_failure(pki: Path) -> None:
    done = _inspect(
        str(pki / "web" / layout.CERT),
        "--ca",
        str(pki / "web" / layout.CA),
        "--name",
        "api.demo.svc",
        "--namespace",
        "shop",
        "--json",
    )
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)
    assert report["verified"] is False
    assert report["problems"] == [
        "the certificate is not valid for 'api.demo.svc': it names web.demo.svc"
    ]
    assert report["policy"].startswith("FAILS for namespace 'shop': name 'web.demo.svc'")
    assert report["certificates"][0]["dns_names"] == ["web.demo.svc"]


def test_the_ca_service_asks_for_a_client_certificate(pki: Path, ca_service: Service) -> None:
    done = _inspect(f"127.0.0.1:{ca_service.port}", "--ca", str(pki / "prov" / layout.CA), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["verified"] is True, report["problems"]
    assert report["tls"]["version"] == "TLSv1.3"
    assert report["tls"]["asked_for_client_certificate"] is True
    assert report["tls"]["group"] in {"x25519", "secp256r1", "X25519MLKEM768"}
    assert report["certificates"][1]["ca"] is True  # it presents its intermediate too


@pytest.fixture
def openssl_server(pki: Path, tmp_path: Path) -> Iterator[int]:
    """``openssl s_server`` with the issued certificate, asking for no client certificate."""
    port = free_port()
    web = pki / "web"
    argv = [
        "openssl",
        "s_server",
        "-quiet",
        "-accept",
        f"127.0.0.1:{port}",
        "-cert",
        str(web / layout.CERT),
        "-key",
        str(web / layout.KEY),
        "-cert_chain",
        str(web / layout.CERT),
        "-groups",
        "P-384",
        "-tls1_2",
    ]
    with running(argv, tmp_path / "s_server.log"):
        wait_until("openssl s_server to listen", lambda: accepts(port), 20, 0.1)
        yield port


def test_a_server_that_asks_for_nothing_and_a_bundle_of_another_ca(
    pki: Path, openssl_server: int, tmp_path: Path
) -> None:
    done = _inspect(f"127.0.0.1:{openssl_server}", "--ca", str(pki / "web" / layout.CA), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["verified"] is True, report["problems"]
    assert report["tls"]["version"] == "TLSv1.2"
    assert report["tls"]["group"] == "secp384r1"
    assert report["tls"]["asked_for_client_certificate"] is False

    ca_cli.ca("init", "--state", str(tmp_path / "other"))
    ca_cli.ca(
        "issue",
        "--state",
        str(tmp_path / "other"),
        "--name",
        "x.demo",
        "--out",
        str(tmp_path / "x"),
    )
    done = _inspect(f"127.0.0.1:{openssl_server}", "--ca", str(tmp_path / "x" / layout.CA))
    assert done.returncode == 2, done.stderr
    assert "✗ certificate signed by unknown authority: no certificate in the trust bundle" in (
        done.stdout
    )
