"""The operator's CA client against the real ``hello-mtls-ca serve`` on 127.0.0.1.

Proves the HTTP contract end to end: the provisioner credential authenticates, answers become
Secrets that `inspect` accepts, the operator and the CA read the same allowances alike, refusals
keep the CA's message, rotation steps are idempotent (and only an admin starts a rotation), and a
CA that is down is reported as unavailable (retried), not as a refusal; a PodCertificateRequest's
key is signed into a status that passes the API server's checks.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness import ca_cli
from harness.ca_service import Service
from harness.processes import free_port
from mtls_contract.marks import ANNOTATION_MODE, ANNOTATION_NAME, ANNOTATION_SANS, POD_CERTIFICATE
from mtls_contract.name_rules import parse_allowed_ips
from mtls_operator import pod_certificates
from mtls_operator.ca_client import CAClient
from mtls_operator.certs import inspect, new_key_and_csr
from mtls_operator.claims import Rules, parse_claim
from mtls_operator.ports import CARefused, CAUnavailable
from mtls_operator.tlssecret import decode_data, secret_body
from support.operator_fakes import status_problems

ALLOWED_IPS = '{"demo": ["10.0.0.0/24"]}'
RULES = Rules(allowed_ips=parse_allowed_ips(ALLOWED_IPS))


@pytest.fixture(scope="module")
def serve_args() -> tuple[str, ...]:
    return (f"--allowed-ips={ALLOWED_IPS}", "--workers=1")


def test_a_signed_answer_becomes_a_secret_that_inspects_clean(
    pki: Path, ca_service: Service
) -> None:
    client = CAClient(ca_service.url, pki / "prov")
    view = client.status()
    claim = parse_claim(
        {ANNOTATION_NAME: "web.demo.svc", ANNOTATION_SANS: "web.demo,10.0.0.9"},
        namespace="demo",
        service_account="web",
        rules=RULES,
    )
    key_pem, csr_pem = new_key_and_csr(claim)
    answer = client.sign(claim.sign_request(csr_pem))
    body = secret_body(claim, key_pem, answer, pods=[])
    found = inspect(decode_data(body))
    assert found.problem is None
    assert found.intermediate_sha256 == view.intermediate_sha256
    assert found.bundle_sha256 == view.bundle_sha256 == answer.bundle_sha256
    assert view.phase == "idle"
    own = inspect(client.credential())
    assert own.problem is None and own.intermediate_sha256 == view.intermediate_sha256


def test_the_ca_refusal_is_kept_word_for_word(pki: Path, ca_service: Service) -> None:
    claim = parse_claim(
        {ANNOTATION_NAME: "web.demo"}, namespace="demo", service_account="web", rules=Rules()
    )
    request = {**claim.sign_request(new_key_and_csr(claim)[1]), "names": ["web.other"]}
    with pytest.raises(CARefused, match="HTTP 403: name 'web.other' is not under namespace 'demo'"):
        CAClient(ca_service.url, pki / "prov").sign(request)


def test_a_workload_certificate_cannot_sign(pki: Path, ca_service: Service) -> None:
    claim = parse_claim(
        {ANNOTATION_NAME: "web.demo"}, namespace="demo", service_account="web", rules=Rules()
    )
    with pytest.raises(CARefused, match="is not a provisioner"):
        CAClient(ca_service.url, pki / "workload").sign(
            claim.sign_request(new_key_and_csr(claim)[1])
        )


def test_a_ca_that_is_down_is_unavailable_not_a_refusal(pki: Path) -> None:
    client = CAClient(f"https://127.0.0.1:{free_port()}", pki / "prov", timeout=2)
    with pytest.raises(CAUnavailable):
        client.status()


def test_an_address_outside_the_allowed_networks_is_refused_by_both(
    pki: Path, ca_service: Service
) -> None:
    claim = parse_claim(
        {ANNOTATION_NAME: "web.demo.svc"}, namespace="demo", service_account="web", rules=RULES
    )
    message = "IP address '10.0.1.9' is not allowed for namespace 'demo'"
    with pytest.raises(ValueError, match=f"^hello-mtls.dev/sans: {message}$"):
        parse_claim(
            {ANNOTATION_NAME: "web.demo.svc", ANNOTATION_SANS: "10.0.1.9"},
            namespace="demo",
            service_account="web",
            rules=RULES,
        )
    request = {**claim.sign_request(new_key_and_csr(claim)[1]), "names": ["10.0.1.9"]}
    with pytest.raises(CARefused, match=f"^HTTP 403: {message}$"):
        CAClient(ca_service.url, pki / "prov").sign(request)


def test_a_bare_public_key_is_signed_and_the_answer_names_its_intermediate(
    pki: Path,
    ca_service: Service,
) -> None:
    """The kubelet's key reaches the CA without a CSR of ours; the same credential and rules."""
    client = CAClient(ca_service.url, pki / "prov")
    key = ec.generate_private_key(ec.SECP256R1())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    request = {"public_key": public_pem.decode(), "names": ["web.demo.svc"], "namespace": "demo"}
    answer = client.sign(request)
    leaf = x509.load_pem_x509_certificates(answer.certificate)[0]
    assert leaf.public_key() == key.public_key()
    assert answer.intermediate_sha256 == client.status().intermediate_sha256
    with pytest.raises(CARefused, match="^HTTP 403: name 'web.other' is not under namespace"):
        client.sign({**request, "names": ["web.other"]})
    with pytest.raises(CARefused, match="is not a provisioner"):
        CAClient(ca_service.url, pki / "workload").sign(request)


def test_a_pod_certificate_request_is_answered_with_a_status_the_api_server_accepts(
    pki: Path,
    ca_service: Service,
) -> None:
    """The signer's path on the real CA: the kubelet's stub CSR in, a valid Issued status out."""
    client = CAClient(ca_service.url, pki / "prov")
    key = ec.generate_private_key(ec.SECP256R1())
    stub = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    der = stub.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    request = {
        "metadata": {"name": "req-1", "namespace": "demo"},
        "spec": {
            "signerName": "hello-mtls.dev/pod-certificate",
            "serviceAccountName": "web",
            "maxExpirationSeconds": 3600,
            "stubPKCS10Request": base64.b64encode(der).decode(),
            "podName": "web-1",
            "podUID": "uid-web-1",
        },
    }
    pod = {
        "metadata": {
            "name": "web-1",
            "namespace": "demo",
            "uid": "uid-web-1",
            "annotations": {ANNOTATION_NAME: "web.demo.svc", ANNOTATION_MODE: POD_CERTIFICATE},
        }
    }
    rules = dataclasses.replace(RULES, pod_certificates=True)
    answer = client.sign(pod_certificates.sign_request(request, pod, rules=rules))
    now = datetime.datetime.now(datetime.UTC)
    status = pod_certificates.issued_status(
        answer.certificate,
        max_lifetime=datetime.timedelta(hours=1),
        refresh_fraction=2 / 3,
        now=now,
        intermediate_sha256=answer.intermediate_sha256,
    )
    assert status_problems(request, status, now) == []
    leaf = x509.load_pem_x509_certificates(answer.certificate)[0]
    assert leaf.public_key() == key.public_key()
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/demo/sa/web"
    ]


# Last: the CA's serving certificate moves to the new root, which this module's credential lacks.
def test_rotation_steps_once_per_phase(pki: Path, ca_service: Service) -> None:
    client = CAClient(ca_service.url, pki / "prov")
    before = client.status()
    with pytest.raises(CARefused, match="HTTP 403: .* may not start a root rotation"):
        client.rotate_root("idle")
    ca_cli.ca("rotate-root", "--state", str(pki / "state"), "--from", "idle")  # an admin starts it
    assert client.status().phase == "both-trusted"
    client.rotate_root("both-trusted")  # the operator moves it on
    client.rotate_root("both-trusted")  # already moved on: the CA's 409 is not an error
    after = client.status()
    assert (before.phase, after.phase) == ("idle", "new-signing")
    assert before.bundle_pem in after.bundle_pem and after.bundle_pem != before.bundle_pem


def test_the_crl_reaches_every_secret_and_names_a_revoked_serial(
    pki: Path, ca_service: Service
) -> None:
    # Issue 23: ca.crl beside ca.crt, re-read when the CA's CRL number moves.
    client = CAClient(ca_service.url, pki / "prov")
    claim = parse_claim(
        {ANNOTATION_NAME: "db.demo.svc"}, namespace="demo", service_account="db", rules=RULES
    )
    key_pem, csr_pem = new_key_and_csr(claim)
    answer = client.sign(claim.sign_request(csr_pem))
    found = inspect(decode_data(secret_body(claim, key_pem, answer, pods=[])))
    before = client.status()
    assert found.crl_sha256 == before.crl_sha256 != ""
    workload = x509.load_pem_x509_certificates((pki / "workload" / "tls.crt").read_bytes())[0]
    assert f"{workload.serial_number:x}" not in before.revoked_serials
    ca_cli.ca("revoke", "--state", str(pki / "state"), "--identity", "web.demo")
    after = client.status()
    assert f"{workload.serial_number:x}" in after.revoked_serials
    assert found.serial not in after.revoked_serials and after.crl_sha256 != found.crl_sha256
