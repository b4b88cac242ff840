"""Keys and CSRs the operator makes, and what `inspect` reads out of a Secret."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mtls_context import CA, CERT, KEY, POLICY
from mtls_operator.certs import inspect, needs_renewal, new_key_and_csr
from mtls_operator.claims import Claim
from support.operator_pki import PKI

UTC = datetime.UTC
HOUR = datetime.timedelta(hours=1)


def test_csr_carries_every_name_and_matches_the_key() -> None:
    c = Claim("shop", "web-tls", ("web.shop", "web.shop.svc", "10.0.0.7"), HOUR, "web")
    key_pem, csr_pem = new_key_and_csr(c)
    key = serialization.load_pem_private_key(key_pem, password=None)
    csr = x509.load_pem_x509_csr(csr_pem)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert csr.is_signature_valid
    assert csr.public_key() == key.public_key()
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["web.shop", "web.shop.svc"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]


@pytest.mark.parametrize(("label", "has_cn"), [("a" * 50, True), ("a" * 60, False)])
def test_a_name_too_long_for_a_cn_goes_only_into_the_san(label: str, has_cn: bool) -> None:
    name = f"{label}.shop.svc"  # 59 or 69 characters; a CN holds at most 64
    _, csr_pem = new_key_and_csr(Claim("shop", "web-tls", (name,), HOUR, "web"))
    csr = x509.load_pem_x509_csr(csr_pem)
    cns = [a.value for a in csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    assert cns == ([name] if has_cn else [])
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [name]


def test_each_call_makes_a_new_key() -> None:
    c = Claim("shop", "web-tls", ("web.shop",), HOUR, "web")
    assert new_key_and_csr(c)[0] != new_key_and_csr(c)[0]


def test_inspect_reads_a_good_secret() -> None:
    pki = PKI()
    found = inspect(pki.data("web.shop"))
    assert found.problem is None
    assert found.intermediate_sha256 == pki.view.intermediate_sha256
    assert found.bundle_sha256 == pki.view.bundle_sha256
    assert found.not_before is not None and found.not_after is not None
    assert found.not_before < datetime.datetime.now(UTC) < found.not_after
    assert int(found.serial, 16) > 0


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda d, other: {}, "missing tls.crt, tls.key, ca.crt, tls-policy.json"),
        (lambda d, other: {**d, KEY: b""}, "missing tls.key"),
        (lambda d, other: {**d, CERT: b"garbage"}, "tls.crt or tls.key is not valid PEM"),
        (lambda d, other: {**d, KEY: other[KEY]}, "tls.key does not match tls.crt"),
        (
            lambda d, other: {
                **d,
                CERT: d[CERT].split(b"-----END CERTIFICATE-----")[0]
                + b"-----END CERTIFICATE-----\n",
            },
            "tls.crt holds no intermediate",
        ),
    ],
)
def test_inspect_names_what_is_wrong(damage, problem) -> None:  # type: ignore[no-untyped-def]
    pki = PKI()
    data = pki.data("web.shop")
    assert inspect(damage(data, pki.data("web.shop"))).problem == problem


def test_inspect_refuses_a_leaf_not_signed_by_the_chain_it_comes_with() -> None:
    mine, foreign = PKI(), PKI()
    data = mine.data("web.shop")
    leaf = data[CERT].split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    foreign_intermediate = foreign.intermediate.cert_pem.bytes()
    found = inspect({**data, CERT: leaf + foreign_intermediate})
    assert found.problem == "tls.crt is not signed by its intermediate"


def test_bundle_and_policy_are_part_of_the_inspection() -> None:
    pki = PKI()
    data = pki.data("web.shop")
    changed = inspect({**data, CA: data[CA] + PKI().root.cert_pem.bytes(), POLICY: b"{}"})
    assert changed.problem is None
    assert changed.bundle_sha256 != pki.view.bundle_sha256
    assert changed.policy == b"{}"


def test_renewal_is_due_at_the_fraction_of_the_lifetime() -> None:
    start = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    end = start + datetime.timedelta(hours=3)
    assert not needs_renewal(start, end, start + datetime.timedelta(minutes=119), 2 / 3)
    assert needs_renewal(start, end, start + datetime.timedelta(minutes=120), 2 / 3)
    assert not needs_renewal(start, end, start + datetime.timedelta(minutes=89), 0.5)
    assert needs_renewal(start, end, start + datetime.timedelta(minutes=90), 0.5)


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5])
def test_renewal_fraction_must_be_within_the_lifetime(fraction: float) -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="renewal fraction"):
        needs_renewal(now, now + HOUR, now, fraction)
