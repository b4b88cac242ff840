"""The real ``hello-mtls-ca serve`` (gunicorn, 2 workers) on 127.0.0.1: signing, refusals,
concurrency, restarts and root rotation over HTTPS."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from harness import ca_cli
from harness.ca_service import Service, credential_session
from harness.processes import free_port
from harness.waiting import wait_until
from mtls_ca.state import DirectoryStore
from mtls_context import layout

ALLOWED_IPS = '{"shop": ["10.1.0.0/16"]}'


@pytest.fixture(scope="module")
def pki(pki: Path) -> Path:
    """The conftest's, with another CA's operator credential (``other-prov``) and an admin of
    another trust domain whose certificate chains to our root (``other-domain``)."""
    ca_cli.ca("init", "--state", str(pki / "other-state"))
    ca_cli.ca(
        "provisioner",
        "--state",
        str(pki / "other-state"),
        "--name",
        "operator",
        "--out",
        str(pki / "other-prov"),
    )
    state = DirectoryStore(pki / "state").load()
    stranger = state.signer.issue(
        uris=["spiffe://evil.example/hello-mtls/admin/alice"],
        common_name="alice",
        valid_for=datetime.timedelta(hours=1),
        client_only=True,
    )
    assert stranger.key_pem is not None
    (pki / "other-domain").mkdir()
    (pki / "other-domain" / layout.CERT).write_bytes(stranger.chain_pem)
    (pki / "other-domain" / layout.KEY).write_bytes(stranger.key_pem)
    return pki


@pytest.fixture(scope="module")
def serve_args() -> tuple[str, ...]:
    return (f"--allowed-ips={ALLOWED_IPS}",)


def _csr(key: object | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, algorithm)  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _request(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "csr": _csr(),
        "names": ["web.demo", "web.demo.svc"],
        "duration": "1h",
        "namespace": "demo",
        "service_account": "web",
    }
    body.update(overrides)
    return body


def test_provisioner_gets_a_chain_openssl_accepts(ca_service: Service, pki: Path) -> None:
    answer = credential_session(pki, "prov").post(
        f"{ca_service.url}/sign", json=_request(), timeout=30
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) >= {"certificate", "ca", "tls_policy", "serial", "not_after", "bundle_sha256"}
    leaf, intermediate = x509.load_pem_x509_certificates(body["certificate"].encode())
    assert f"{leaf.serial_number:x}" == body["serial"]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/demo/sa/web"
    ]
    assert body["ca"] == (pki / "prov" / layout.CA).read_text()
    work = pki / "verify"
    work.mkdir(exist_ok=True)
    (work / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (work / "int.pem").write_bytes(intermediate.public_bytes(serialization.Encoding.PEM))
    (work / "ca.pem").write_text(body["ca"])
    (work / "other.pem").write_bytes((pki / "other-prov" / layout.CA).read_bytes())

    def verify(ca: str) -> int:
        return subprocess.run(
            [
                "openssl",
                "verify",
                "-x509_strict",
                "-purpose",
                "sslserver",
                "-CAfile",
                str(work / ca),
                "-untrusted",
                str(work / "int.pem"),
                str(work / "leaf.pem"),
            ],
            capture_output=True,
            timeout=30,
            check=False,
        ).returncode

    assert verify("ca.pem") == 0
    assert verify("other.pem") != 0


def test_read_only_endpoints_need_no_client_certificate(ca_service: Service, pki: Path) -> None:
    anonymous = credential_session(pki, None)
    assert anonymous.get(f"{ca_service.url}/healthz", timeout=10).json() == {"status": "ok"}
    assert (
        anonymous.get(f"{ca_service.url}/roots", timeout=10).text
        == (pki / "prov" / layout.CA).read_text()
    )
    assert (
        anonymous.get(f"{ca_service.url}/tls-policy", timeout=10).json()["profile"]
        == "intermediate"
    )
    status = anonymous.get(f"{ca_service.url}/status", timeout=10).json()
    assert status["phase"] == "idle" and len(status["roots"]) == 1


@pytest.mark.parametrize(
    ("credential", "body", "status", "error"),
    [
        (None, "valid", 401, "a client certificate is required"),
        ("workload", "valid", 403, "client 'web.demo' is not a provisioner of this CA"),
        ("prov", b"{not json", 400, "request body must be JSON"),
        ("prov", {"csr": 5}, 400, "'csr' must be a PEM string"),
        (
            "prov",
            {"csr": "garbage", "names": ["web.demo"]},
            400,
            "csr is not a PEM certificate signing request",
        ),
        ("prov", "tampered", 400, "csr signature does not verify"),
        (
            "prov",
            "ed25519",
            400,
            "csr key type Ed25519PublicKey is not supported (use ECDSA or RSA)",
        ),
        (
            "prov",
            {"names": ["web.other"], "namespace": "demo"},
            403,
            "name 'web.other' is not under namespace 'demo'",
        ),
        (
            "prov",
            {"names": ["*.demo"], "namespace": "demo"},
            403,
            "wildcard name '*.demo' is not allowed",
        ),
        ("prov", {"duration": "1m"}, 403, "duration 1m is below the CA minimum of 5m"),
        ("prov", {"duration": "90d"}, 403, "duration 90d is above the CA maximum of 30d"),
        ("prov", "huge", 413, "request body is larger than 65536 bytes"),
        # Issue 13: each of these was signed.
        (
            "other-domain",
            "valid",
            403,
            "client 'spiffe://evil.example/hello-mtls/admin/alice' is not a provisioner of this CA",
        ),
        ("prov", "no namespace", 400, "'namespace' is required with a provisioner credential"),
        (
            "prov",
            {"names": ["evil.example.com"], "extra_allowed": ["evil.example.com"]},
            400,
            "unknown field(s): extra_allowed",
        ),
        (
            "prov",
            {"names": ["google.com"], "namespace": "com"},
            403,
            "name 'google.com' is an internet name (public suffix 'com'); "
            "a namespace cannot claim it",
        ),
        (
            "prov",
            {"names": ["github.io"], "namespace": "io"},
            403,
            "name 'github.io' is an internet name (public suffix 'github.io'); "
            "a namespace cannot claim it",
        ),
        (
            "prov",
            {"names": ["web.shop.svc", "10.96.0.1"], "namespace": "shop"},
            403,
            "IP address '10.96.0.1' is not allowed for namespace 'shop'",
        ),
        (
            "prov",
            {"names": ["web.shop.svc", "169.254.169.254"], "namespace": "shop"},
            403,
            "IP address '169.254.169.254' is not allowed for namespace 'shop'",
        ),
        (
            "prov",
            {"names": ["web.shop.svc", "127.0.0.1"], "namespace": "shop"},
            403,
            "IP address '127.0.0.1' is not allowed for namespace 'shop'",
        ),
    ],
)
def test_refusals(
    ca_service: Service, pki: Path, credential: str | None, body: object, status: int, error: str
) -> None:
    data: bytes
    if body == "valid":
        data = json.dumps(_request()).encode()
    elif body == "tampered":
        good = _request()
        pem = str(good["csr"]).splitlines()
        pem[-3] = pem[-3][:-4] + ("AAAA" if pem[-3][-4:] != "AAAA" else "BBBB")
        data = json.dumps({**good, "csr": "\n".join(pem) + "\n"}).encode()
    elif body == "ed25519":
        data = json.dumps(_request(csr=_csr(ed25519.Ed25519PrivateKey.generate()))).encode()
    elif body == "no namespace":
        data = json.dumps({"csr": _csr(), "names": ["evil.example.com"]}).encode()
    elif body == "huge":
        data = json.dumps(_request(names=["web.demo"] * 10000)).encode()
    elif isinstance(body, dict):
        data = json.dumps({**_request(), **body}).encode()
    else:
        assert isinstance(body, bytes)
        data = body
    answer = credential_session(pki, credential).post(
        f"{ca_service.url}/sign", data=data, timeout=30
    )
    assert (answer.status_code, answer.json()) == (status, {"error": error})


def test_client_of_another_ca_is_refused_by_tls(ca_service: Service, pki: Path) -> None:
    stranger = credential_session(pki, "other-prov")
    with pytest.raises(requests.exceptions.ConnectionError):
        stranger.post(f"{ca_service.url}/sign", json=_request(), timeout=10)
    # The twin: the same request with our own provisioner goes through.
    assert (
        credential_session(pki, "prov")
        .post(f"{ca_service.url}/sign", json=_request(), timeout=10)
        .ok
    )


def test_200_parallel_requests_get_200_distinct_serials(ca_service: Service, pki: Path) -> None:
    bodies = [_request() for _ in range(200)]

    def sign(index: int) -> str:
        session = sessions[index % len(sessions)]
        answer = session.post(f"{ca_service.url}/sign", json=bodies[index], timeout=60)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["serial"])

    sessions = [credential_session(pki, "prov") for _ in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        serials = list(pool.map(sign, range(200)))
    assert len(serials) == 200 and len(set(serials)) == 200


def test_metrics_count_what_happened(ca_service: Service, pki: Path) -> None:
    session = credential_session(pki, "prov")
    assert session.post(f"{ca_service.url}/sign", json=_request(), timeout=10).ok
    assert (
        session.post(f"{ca_service.url}/sign", json=_request(duration="1m"), timeout=10).status_code
        == 403
    )
    text = credential_session(pki, None).get(f"{ca_service.url}/metrics", timeout=10).text
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["hello_mtls_ca_issued_total"] >= 1
    assert values['hello_mtls_ca_rejected_total{reason="policy"}'] >= 1
    assert values["hello_mtls_ca_signing_seconds_count"] == values["hello_mtls_ca_issued_total"]
    expiry = [v for k, v in values.items() if k.startswith("hello_mtls_ca_cert_expiry_seconds")]
    assert len(expiry) == 2 and all(300 * 86400 < v < 3651 * 86400 for v in expiry)


def test_allowed_addresses_and_an_admin_without_namespace(ca_service: Service, pki: Path) -> None:
    operator = credential_session(pki, "prov")
    body = _request(names=["web.shop.svc", "10.1.2.3"], namespace="shop")
    answer = operator.post(f"{ca_service.url}/sign", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    leaf = x509.load_pem_x509_certificates(answer.json()["certificate"].encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    # The admin may sign without a namespace (syntax rules only, no SPIFFE ID).
    admin = credential_session(pki, "alice")
    anywhere = {"csr": _csr(), "names": ["ca.example.com"], "duration": "1h"}
    answer = admin.post(f"{ca_service.url}/sign", json=anywhere, timeout=30)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("credential", "status", "error"),
    [
        (None, 401, "a client certificate is required"),
        ("workload", 403, "client 'web.demo' is not a provisioner of this CA"),
        (
            "other-domain",
            403,
            "client 'spiffe://evil.example/hello-mtls/admin/alice' is not a provisioner of this CA",
        ),
        # Issue 13: the operator's credential could start a root rotation.
        (
            "prov",
            403,
            "client 'spiffe://cluster.local/hello-mtls/provisioner/operator' may not start a root "
            "rotation (admins may)",
        ),
    ],
)
def test_only_an_admin_starts_a_root_rotation(
    ca_service: Service, pki: Path, credential: str | None, status: int, error: str
) -> None:
    caller = credential_session(pki, credential)
    answer = caller.post(f"{ca_service.url}/rotate-root", json={"from": "idle"}, timeout=30)
    assert (answer.status_code, answer.json()) == (status, {"error": error})
    assert credential_session(pki, None).get(f"{ca_service.url}/status").json()["phase"] == "idle"


def _served_issuer(port: int, ca: Path) -> x509.Name:
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).issuer


def test_state_survives_a_restart_and_rotation_runs_over_https(pki: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    ca_cli.ca("init", "--state", str(state))
    ca_cli.ca(
        "provisioner",
        "--state",
        str(state),
        "--role",
        "admin",
        "--name",
        "admin",
        "--out",
        str(tmp_path / "admin"),
    )
    (tmp_path / "prov").symlink_to(tmp_path / "admin")
    first = Service(state, tmp_path / "serve.log")
    try:
        session = credential_session(tmp_path, "admin")
        before = session.get(f"{first.url}/status", timeout=10).json()

        # Several callers (over both workers) ask for the same step at once: exactly one wins.
        def step(_: int) -> requests.Response:
            caller = credential_session(tmp_path, "admin")
            return caller.post(f"{first.url}/rotate-root", json={"from": "idle"}, timeout=30)

        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(step, range(6)))
        assert sorted(a.status_code for a in answers) == [200, 409, 409, 409, 409, 409]
        winner = next(a for a in answers if a.status_code == 200)
        assert winner.json()["phase"] == "both-trusted"
        conflict = next(a for a in answers if a.status_code == 409)
        assert conflict.json() == {"error": "root rotation is in phase 'both-trusted', not 'idle'"}
        assert (
            credential_session(tmp_path, None)
            .post(f"{first.url}/rotate-root", json={"from": "both-trusted"}, timeout=10)
            .status_code
            == 401
        )
    finally:
        first.stop()
    second = Service(state, tmp_path / "serve.log")
    try:
        session = credential_session(tmp_path, "admin")
        status = session.get(f"{second.url}/status", timeout=10).json()
        assert status["phase"] == "both-trusted"
        assert status["roots"][0] == before["roots"][0] and len(status["roots"]) == 2
        signed = session.post(f"{second.url}/sign", json=_request(), timeout=30).json()
        assert signed["bundle_sha256"] == status["bundle_sha256"]
        # Old root still signs; the bundle already carries both.
        old_intermediate = before["signing"]["intermediate_fingerprint_sha256"]
        chain = x509.load_pem_x509_certificates(signed["certificate"].encode())
        assert chain[1].fingerprint(hashes.SHA256()).hex() == old_intermediate
        (tmp_path / "bundle.pem").write_text(signed["ca"])
        new_signing = session.post(
            f"{second.url}/rotate-root", json={"from": "both-trusted"}, timeout=30
        ).json()
        new_intermediate = x509.load_pem_x509_certificates(
            session.post(f"{second.url}/sign", json=_request(), timeout=30)
            .json()["certificate"]
            .encode()
        )[1]
        assert (
            new_intermediate.fingerprint(hashes.SHA256()).hex()
            == (new_signing["signing"]["intermediate_fingerprint_sha256"])
        )
        # The service's own certificate follows the new signer (upkeep + reload, within seconds).
        wait_until(
            "the serving certificate re-issued by the new intermediate",
            lambda: (
                _served_issuer(second.port, tmp_path / "bundle.pem") == new_intermediate.subject
            ),
            60,
            0.2,
        )
        done = session.post(f"{second.url}/rotate-root", json={"from": "new-signing"}, timeout=30)
        assert done.json()["phase"] == "idle"
        assert [r["fingerprint_sha256"] for r in done.json()["roots"]] == [
            status["roots"][1]["fingerprint_sha256"]
        ]
    finally:
        second.stop()


def test_a_first_start_creates_the_state_and_signs_on_the_sign_port_only(tmp_path: Path) -> None:
    state, sign_port = tmp_path / "state", free_port()
    sign_url = f"https://127.0.0.1:{sign_port}"
    service = Service(
        state, tmp_path / "serve.log", "--create-if-missing", f"--sign-bind=127.0.0.1:{sign_port}"
    )
    try:
        assert (state / "state.json").stat().st_mode & 0o077 == 0
        ca_cli.ca(
            "provisioner",
            "--state",
            str(state),
            "--name",
            "operator",
            "--out",
            str(tmp_path / "prov"),
        )
        session = credential_session(tmp_path, "prov")
        refused = session.post(f"{service.url}/sign", json=_request(), timeout=30)
        assert refused.status_code == 404
        assert refused.json() == {"error": f"POST /sign is served on port {sign_port} only"}
        assert session.post(f"{sign_url}/sign", json=_request(), timeout=30).status_code == 200
        anyone = credential_session(tmp_path, None)
        for url in (service.url, sign_url):
            assert b"BEGIN CERTIFICATE" in anyone.get(f"{url}/roots", timeout=10).content
    finally:
        service.stop()
