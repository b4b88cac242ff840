"""``POST /sign`` bodies: parsing (400s) and policy (403s) without a web server."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mtls_ca import revocation
from mtls_ca.authority import CA, fingerprint
from mtls_ca.sign_request import (
    DEFAULT_DURATION,
    Malformed,
    RuleViolation,
    answer,
    answer_json,
    encode,
    parse,
    sign,
)
from mtls_ca.state import State
from mtls_contract.identities import ADMIN, PROVISIONER
from mtls_contract.name_rules import parse_allowed_ips


@pytest.fixture(scope="module")
def state() -> State:
    return State(generations=(CA.create(),))


@pytest.fixture(scope="module")
def csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def test_parse_defaults(csr: str) -> None:
    request = parse({"csr": csr, "names": ["a.demo"]})
    assert request.duration == DEFAULT_DURATION
    assert (request.namespace, request.service_account) == (None, None)
    full = parse(
        {
            "csr": csr,
            "names": ["a.demo"],
            "duration": "90m",
            "namespace": "demo",
            "service_account": "web",
        }
    )
    assert full.duration == datetime.timedelta(minutes=90)
    assert (full.namespace, full.service_account) == ("demo", "web")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "request body must be a JSON object"),
        ("text", "request body must be a JSON object"),
        ({"names": ["a.demo"]}, "give exactly one of 'csr' and 'public_key'"),
        (
            {"csr": "C", "public_key": "K", "names": ["a"]},
            "give exactly one of 'csr' and 'public_key'",
        ),
        ({"csr": 1, "names": ["a.demo"]}, "'csr' must be a PEM string"),
        ({"public_key": [], "names": ["a.demo"]}, "'public_key' must be a PEM string"),
        ({"public_key": "KEY", "names": ["a"]}, "public_key is not a PEM public key"),
        ({"csr": "CSR", "names": "a.demo"}, "'names' must be a list of strings"),
        ({"csr": "CSR", "names": [1]}, "'names' must be a list of strings"),
        # Issue 13: a caller's own allowances were trusted; only the CA's configuration counts.
        (
            {"csr": "CSR", "names": ["a"], "extra_allowed": ["a"]},
            "unknown field(s): extra_allowed",
        ),
        ({"csr": "CSR", "names": ["a"], "namespace": 3}, "'namespace' must be a string"),
        (
            {"csr": "CSR", "names": ["a"], "service_account": "sa"},
            "'service_account' needs 'namespace'",
        ),
        ({"csr": "CSR", "names": ["a"], "duration": 3600}, "'duration' must be a string like 24h"),
        (
            {"csr": "CSR", "names": ["a"], "duration": "1 hour"},
            "duration '1 hour' is not like 90m, 24h, 1h30m or 30s",
        ),
        (
            {"csr": "CSR", "names": ["a"], "bogus": 1, "alsobad": 2},
            "unknown field(s): alsobad, bogus",
        ),
        ({"csr": "CSR", "names": ["a"]}, "csr is not a PEM certificate signing request"),
    ],
)
def test_parse_rejects(body: Any, message: str) -> None:
    with pytest.raises(Malformed) as info:
        parse(body)
    assert str(info.value) == message


def test_sign_with_namespace_adds_the_spiffe_id(state: State, csr: str) -> None:
    issued = sign(
        state,
        parse({"csr": csr, "names": ["web.demo"], "namespace": "demo", "duration": "1h"}),
        role=PROVISIONER,
    )
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/demo/sa/default"
    ]
    body = answer(state, issued)
    assert body["serial"] == f"{issued.serial:x}"
    assert body["ca"] == state.bundle_pem.decode()
    assert body["bundle_sha256"] == state.bundle_sha256
    assert body["not_after"].endswith("Z")
    assert body["intermediate_sha256"] == fingerprint(state.signer.intermediate)


ALLOWED = parse_allowed_ips('{"demo": ["10.0.0.0/8"]}')


def test_the_answers_json_is_the_answer_whatever_the_state(state: State, csr: str) -> None:
    revoked = revocation.with_crl(state)  # another state: its own CRL, so another template
    for current in (state, revoked, state):
        for names in (["web.demo"], ["api.demo", "10.0.0.1"]):
            request = parse({"csr": csr, "names": names, "namespace": "demo"})
            issued = sign(current, request, role=PROVISIONER, allowed_ips=ALLOWED)
            assert answer_json(current, issued) == encode(answer(current, issued))


def test_only_an_admin_signs_without_namespace_and_then_syntax_only(state: State, csr: str) -> None:
    issued = sign(state, parse({"csr": csr, "names": ["api.example.com"]}), role=ADMIN)
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == []
    with pytest.raises(RuleViolation, match="^wildcard name"):
        sign(state, parse({"csr": csr, "names": ["*.example.com"]}), role=ADMIN)
    # Issue 13: the operator's credential could sign any name by leaving the namespace out.
    with pytest.raises(Malformed) as info:
        sign(state, parse({"csr": csr, "names": ["api.example.com"]}), role=PROVISIONER)
    assert str(info.value) == "'namespace' is required with a provisioner credential"


def test_sign_allows_ips_only_inside_the_cas_networks(state: State, csr: str) -> None:
    body = {"csr": csr, "names": ["web.shop.svc", "10.1.2.3"], "namespace": "shop"}
    allowed = parse_allowed_ips('{"shop": ["10.1.0.0/16"]}')
    sign(state, parse(body), role=PROVISIONER, allowed_ips=allowed)
    for address, config in (("10.1.2.3", {}), ("10.96.0.1", allowed), ("127.0.0.1", allowed)):
        with pytest.raises(RuleViolation) as info:
            sign(
                state,
                parse({**body, "names": ["web.shop.svc", address]}),
                role=PROVISIONER,
                allowed_ips=config,
            )
        assert str(info.value) == f"IP address '{address}' is not allowed for namespace 'shop'"


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        ({"duration": "1m"}, RuleViolation, "duration 1m is below the CA minimum of 5m"),
        ({"names": []}, RuleViolation, "at least one name is required"),
        (
            {"names": ["web.other"]},
            RuleViolation,
            "name 'web.other' is not under namespace 'demo'",
        ),
        ({"service_account": "Web"}, Malformed, "service account 'Web' is not a valid name"),
        ({"namespace": "De"}, RuleViolation, "namespace 'De' is not a valid namespace name"),
    ],
)
def test_sign_refuses(
    state: State, csr: str, extra: dict[str, Any], error: type[Exception], message: str
) -> None:
    body = {"csr": csr, "names": ["web.demo"], "namespace": "demo", **extra}
    with pytest.raises(error) as info:
        sign(state, parse(body), role=PROVISIONER)
    assert str(info.value) == message


def test_sign_honours_the_cas_own_extra_allowed(state: State, csr: str) -> None:
    body = {"csr": csr, "names": ["api.example.com", "x.corp.example"], "namespace": "demo"}
    config = {"demo": ("api.example.com", "*.corp.example"), "other": ("y.example.com",)}
    sign(state, parse(body), role=PROVISIONER, extra_allowed=config)
    with pytest.raises(
        RuleViolation, match="^name 'api.example.com' is not under namespace 'other'$"
    ):
        sign(state, parse({**body, "namespace": "other"}), role=PROVISIONER, extra_allowed=config)


def _spki(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der.decode()


def test_a_bare_public_key_is_signed_under_the_same_rules(state: State) -> None:
    """A kubelet's key comes without a CSR of ours: the key is certified, the names checked."""
    key = ec.generate_private_key(ec.SECP384R1())
    body = {"public_key": _spki(key), "names": ["web.demo"], "namespace": "demo"}
    issued = sign(state, parse(body), role=PROVISIONER)
    assert issued.certificate.public_key() == key.public_key()
    with pytest.raises(RuleViolation, match="^name 'web.other' is not under namespace 'demo'$"):
        sign(state, parse({**body, "names": ["web.other"]}), role=PROVISIONER)


def test_keys_of_types_the_ca_does_not_sign_are_malformed() -> None:
    with pytest.raises(Malformed) as info:
        parse({"public_key": _spki(ed25519.Ed25519PrivateKey.generate()), "names": ["a"]})
    assert str(info.value) == (
        "public_key key type Ed25519PublicKey is not supported (use ECDSA or RSA)"
    )
    p521 = _spki(ec.generate_private_key(ec.SECP521R1()))
    with pytest.raises(Malformed, match="^public_key key curve secp521r1 is not supported"):
        parse({"public_key": p521, "names": ["a"]})


def test_a_csr_whose_signature_does_not_verify_is_malformed(csr: str) -> None:
    """A kubelet's stub request is checked like any CSR: one with another key's signature fails."""
    der = bytearray(x509.load_pem_x509_csr(csr.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # inside the signature
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(Malformed, match="^csr signature does not verify$"):
        parse({"csr": forged, "names": ["a.demo"]})
