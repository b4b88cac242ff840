"""schemathesis fuzzes the real ``hello-mtls-ca serve`` on 127.0.0.1 from the OpenAPI document it
serves, over mTLS with the operator's provisioner credential: no 500, every error a JSON object
with a message, and nothing issued that the name rules forbid. Twice: the root holder (gthread,
`mtls_ca.gunicorn_worker`) and a signer's signing port (its event loop, `mtls_ca.event_worker`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

from harness.ca_service import (
    Service,
    credential_session,
    init_with_provisioner,
    root_holder_and_signer,
)
from harness.processes import free_port
from harness.waiting import wait_until
from mtls_context import layout
from mtls_contract import name_rules
from mtls_contract.name_rules import parse_extra_allowed

ALLOWED_IPS = '{"shop": ["10.1.0.0/16"]}'
EXTRA_ALLOWED = '{"shop": ["api.example.com"]}'


def _csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


VALID_CSR = _csr()
VALID_PUBLIC_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


@schemathesis.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Most /sign bodies get a real CSR or public key, so that their names reach the name rules."""
    if isinstance(body, dict) and "csr" in body:
        return st.sampled_from([{**body, "csr": VALID_CSR}, body])
    if isinstance(body, dict) and "public_key" in body:
        return st.sampled_from([{**body, "public_key": VALID_PUBLIC_KEY}, body])
    return st.just(body)


SERVE_ARGS = (f"--allowed-ips={ALLOWED_IPS}", f"--extra-allowed={EXTRA_ALLOWED}")


@pytest.fixture(scope="module")
def serve_args() -> tuple[str, ...]:
    return SERVE_ARGS


@pytest.fixture(scope="module")
def caller(pki: Path) -> requests.Session:
    return credential_session(pki, "prov")


@pytest.fixture(scope="module", params=["root holder", "signer's signing port"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, requests.Session]]:
    """The URL fuzzed and the operator's session for it."""
    if request.param == "root holder":
        service: Service = request.getfixturevalue("ca_service")
        yield service.url, request.getfixturevalue("caller")
        return
    pki = tmp_path_factory.mktemp("signer-pki")  # a CA of its own: one root holder per state
    init_with_provisioner(pki)
    sign_url = f"https://127.0.0.1:{free_port()}"
    signing = (f"--sign-bind={sign_url.removeprefix('https://')}", *SERVE_ARGS)
    with root_holder_and_signer(pki / "state", pki, pki / "prov" / layout.CA, signer_args=signing):
        session = credential_session(pki, "prov")
        wait_until(  # the signer answers once it holds the signing material
            "the signer's signing port",
            lambda: session.get(f"{sign_url}/healthz", timeout=5).ok,
            30,
            retry_on=(requests.RequestException,),
        )
        yield sign_url, session


# The document in the package (what GET /openapi.json serves, checked below). schemathesis's
# fixture-loaded schemas do not work with pytest 9.2, so the schema is loaded at import.
DOCUMENT = json.loads(resources.files("mtls_ca").joinpath("openapi.json").read_text())
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_service_serves_the_document(ca_service: Service, caller: requests.Session) -> None:
    assert caller.get(f"{ca_service.url}/openapi.json", timeout=10).json() == DOCUMENT


@schemathesis.check
def errors_are_json_messages(ctx: Any, response: Any, case: Any) -> bool:
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and set(body) == {"error"}, body
        assert isinstance(body["error"], str) and body["error"].strip(), body
    return True


@schemathesis.check
def issued_names_obey_the_rules(ctx: Any, response: Any, case: Any) -> bool:
    if (case.method, case.path, response.status_code) != ("POST", "/sign", 200):
        return True
    namespace = case.body["namespace"]
    leaf = x509.load_pem_x509_certificates(response.json()["certificate"].encode())[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = sans.get_values_for_type(x509.DNSName)
    names += [str(a) for a in sans.get_values_for_type(x509.IPAddress)]
    name_rules.check_names(
        names,
        namespace=namespace,
        extra_allowed=parse_extra_allowed(EXTRA_ALLOWED).get(namespace, ()),
        allowed_ips=name_rules.parse_allowed_ips(ALLOWED_IPS).get(namespace, ()),
    )
    return True


@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_ca_api_holds_up_to_fuzzing(case: Any, target: tuple[str, requests.Session]) -> None:
    url, caller = target
    # schemathesis passes its own `verify` to requests: the session's settings go explicitly.
    response = case.call(
        base_url=url, session=caller, verify=caller.verify, cert=caller.cert, timeout=30
    )
    event(f"{case.method} {case.path}: HTTP {response.status_code}")
    case.validate_response(
        response,
        checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.response_schema_conformance,
            schemathesis.checks.status_code_conformance,
            errors_are_json_messages,
            issued_names_obey_the_rules,
        ],
    )
