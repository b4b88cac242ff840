"""The CA core: chain shape, extensions, serials, CSRs, and RFC 5280 lint of every kind of cert."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
import validators
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from pkilint import loader
from pkilint.pkix import certificate, extension, name
from pkilint.validation import ValidationFindingSeverity

from mtls_ca.authority import CA, KeyType, fingerprint, load_csr, public_key_sha256
from mtls_contract.durations import BACKDATE

HOUR = datetime.timedelta(hours=1)
SPIFFE = "spiffe://cluster.local/ns/demo/sa/default"


@pytest.fixture(scope="module", params=list(KeyType), ids=lambda k: k.value)
def ca(request: pytest.FixtureRequest) -> CA:
    return CA.create(key_type=request.param)


@pytest.fixture(scope="module")
def ec_ca() -> CA:
    return CA.create()


def _verify(ca: CA, leaf: x509.Certificate, hostname: str) -> None:
    verifier = PolicyBuilder().store(Store([ca.root])).build_server_verifier(x509.DNSName(hostname))
    verifier.verify(leaf, [ca.intermediate])


def test_root_and_intermediate_are_cas(ca: CA) -> None:
    for cert, path_length in ((ca.root, 1), (ca.intermediate, 0)):
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca and bc.value.path_length == path_length
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert ca.intermediate.issuer == ca.root.subject
    assert ca.root.not_valid_after_utc - ca.root.not_valid_before_utc > datetime.timedelta(
        days=3649
    )
    intermediate_life = ca.intermediate.not_valid_after_utc - ca.intermediate.not_valid_before_utc
    assert datetime.timedelta(days=365) <= intermediate_life < datetime.timedelta(days=366)


def test_leaf_chain_verifies_and_other_ca_does_not(ca: CA, ec_ca: CA) -> None:
    issued = ca.issue("web.demo.svc", valid_for=HOUR)
    _verify(ca, issued.certificate, "web.demo.svc")
    with pytest.raises(VerificationError):
        _verify(ca, issued.certificate, "other.demo.svc")
    if ca is not ec_ca:
        with pytest.raises(VerificationError):
            _verify(ec_ca, issued.certificate, "web.demo.svc")


def test_leaf_extensions(ca: CA) -> None:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    issued = ca.issue(
        "web.demo.svc", "10.0.0.7", uris=[SPIFFE], valid_for=HOUR, key_type=ca.key_type, now=now
    )
    cert = issued.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web.demo.svc"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["web.demo.svc"]
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [SPIFFE]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert ku.value.key_encipherment == (ca.key_type is not KeyType.ECDSA_P256)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.not_valid_before_utc == now - BACKDATE
    assert cert.not_valid_after_utc == now + HOUR
    assert issued.chain_pem == (cert.public_bytes(serialization.Encoding.PEM) + ca.intermediate_pem)


def test_issue_makes_a_key_of_the_asked_type(ec_ca: CA) -> None:
    issued = ec_ca.issue("a.demo", valid_for=HOUR, key_type=KeyType.RSA_2048)
    assert issued.key_pem is not None
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    public = issued.certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert key.public_key().public_numbers() == public.public_numbers()
    ec_issued = ec_ca.issue("a.demo", valid_for=HOUR)
    assert ec_issued.key_pem is not None and b"BEGIN PRIVATE KEY" in ec_issued.key_pem
    assert isinstance(ec_issued.certificate.public_key(), ec.EllipticCurvePublicKey)


def test_serials_are_positive_large_and_distinct(ec_ca: CA) -> None:
    serials = {ec_ca.issue("a.demo", valid_for=HOUR).serial for _ in range(50)}
    assert len(serials) == 50
    assert all(1 << 64 <= s < 1 << 159 for s in serials)


def test_leaf_never_outlives_the_intermediate() -> None:
    ca = CA.create(intermediate_valid_for=datetime.timedelta(days=2))
    issued = ca.issue("a.demo", valid_for=datetime.timedelta(days=30))
    assert issued.not_after == ca.intermediate.not_valid_after_utc
    shorter = ca.issue("a.demo", valid_for=HOUR)
    assert shorter.not_after < ca.intermediate.not_valid_after_utc


def test_long_first_name_leaves_subject_empty_and_san_critical(ec_ca: CA) -> None:
    long_name = "a" * 63 + ".demo.svc"
    cert = ec_ca.issue(long_name, valid_for=HOUR).certificate
    assert len(cert.subject) == 0
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    short = ec_ca.issue("a.demo.svc", valid_for=HOUR).certificate
    assert len(short.subject) == 1


def test_provisioner_credential_is_client_only(ec_ca: CA) -> None:
    uri = "spiffe://cluster.local/hello-mtls/provisioner/operator"
    cert = ec_ca.issue(uris=[uri], common_name="operator", valid_for=HOUR, client_only=True)
    eku = cert.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.certificate.subject.rfc4514_string() == "CN=operator"


def test_duplicate_names_appear_once(ec_ca: CA) -> None:
    cert = ec_ca.issue("a.demo", "a.demo", "b.demo", valid_for=HOUR).certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.demo", "b.demo"]


def test_issue_needs_a_name(ec_ca: CA) -> None:
    with pytest.raises(ValueError, match="^a certificate needs at least one name$"):
        ec_ca.issue(valid_for=HOUR)


def _csr(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *extensions: x509.ExtensionType
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil.example")])
    )
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_sign_csr_takes_only_the_key(ec_ca: CA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = _csr(key, x509.BasicConstraints(ca=True, path_length=None))
    issued = ec_ca.sign_csr(load_csr(pem), "web.demo", uris=[SPIFFE], valid_for=HOUR)
    assert issued.key_pem is None
    cert = issued.certificate
    assert cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == "CN=web.demo"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    _verify(ec_ca, cert, "web.demo")


def _tamper(pem: bytes) -> bytes:
    csr = x509.load_pem_x509_csr(pem)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature value
    from base64 import encodebytes

    body = encodebytes(bytes(der)).decode()
    return (
        f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n".encode()
    )


def test_load_csr_accepts_supported_keys() -> None:
    for key in (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ):
        assert load_csr(_csr(key)).public_key() == key.public_key()


@pytest.mark.parametrize(
    ("make_pem", "message"),
    [
        (lambda: b"", "csr is not a PEM certificate signing request"),
        (lambda: b"hello", "csr is not a PEM certificate signing request"),
        (
            lambda: (
                b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            ),
            "csr is not a PEM certificate signing request",
        ),
        (
            lambda: _tamper(_csr(ec.generate_private_key(ec.SECP256R1()))),
            "csr signature does not verify",
        ),
        (
            lambda: _tamper(_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048))),
            "csr signature does not verify",
        ),
        (
            lambda: _csr(ec.generate_private_key(ec.SECP521R1())),
            r"csr key curve secp521r1 is not supported \(use P-256 or P-384\)",
        ),
        (
            lambda: _csr(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
            r"csr RSA key of 1024 bits is not supported \(use 2048, 3072 or 4096\)",
        ),
        (
            lambda: (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([]))
                .sign(ed25519.Ed25519PrivateKey.generate(), None)
                .public_bytes(serialization.Encoding.PEM)
            ),
            r"csr key type Ed25519PublicKey is not supported \(use ECDSA or RSA\)",
        ),
    ],
    ids=[
        "empty",
        "not-pem",
        "bad-der",
        "ec-bad-signature",
        "rsa-bad-signature",
        "p521",
        "rsa1024",
        "ed25519",
    ],
)
def test_load_csr_rejects(make_pem: object, message: str) -> None:
    assert callable(make_pem)
    with pytest.raises(ValueError, match=f"^{message}$"):
        load_csr(make_pem())


def test_pem_round_trip_keeps_the_ca(ca: CA) -> None:
    loaded = CA.from_pem(*ca.to_pem())
    assert loaded.root == ca.root and loaded.intermediate == ca.intermediate
    assert loaded.key_type is ca.key_type
    issued = loaded.issue("a.demo", valid_for=HOUR)
    _verify(ca, issued.certificate, "a.demo")


def test_renew_intermediate_keeps_the_root(ec_ca: CA) -> None:
    renewed = ec_ca.renew_intermediate()
    assert renewed.root == ec_ca.root
    assert fingerprint(renewed.intermediate) != fingerprint(ec_ca.intermediate)
    assert renewed.intermediate.subject != ec_ca.intermediate.subject
    leaf = renewed.issue("a.demo", valid_for=HOUR).certificate
    _verify(renewed, leaf, "a.demo")
    with pytest.raises(VerificationError):
        _verify(ec_ca, leaf, "a.demo")  # the old intermediate did not sign it


def test_fingerprint_is_sha256_of_der(ec_ca: CA) -> None:
    der = ec_ca.root.public_bytes(serialization.Encoding.DER)
    assert fingerprint(ec_ca.root) == ec_ca.root.fingerprint(hashes.SHA256()).hex()
    assert len(fingerprint(ec_ca.root)) == 64 and der


# --- RFC 5280 lint (pkilint) of every kind of certificate the CA makes -------------------------

_LINTER = certificate.create_pkix_certificate_validator_container(
    certificate.create_decoding_validators(
        name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
    ),
    [
        certificate.create_issuer_validator_container([]),
        certificate.create_validity_validator_container(),
        certificate.create_subject_validator_container([]),
        certificate.create_extensions_validator_container([]),
        certificate.create_spki_validator_container([]),
    ],
)


def _findings(cert: x509.Certificate) -> list[tuple[str, str, str]]:
    """pkilint findings of NOTICE or worse, minus the justified one below."""
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(
        cert.public_bytes(serialization.Encoding.DER), "cert"
    )
    found = []
    for result in _LINTER.validate(doc.root):
        for desc in result.finding_descriptions:
            if desc.finding.severity > ValidationFindingSeverity.NOTICE:
                continue
            value = str(result.node.pdu)
            # pkilint checks URIs with `validators.url`, which knows only nine schemes
            # (http, https, ftp, ...), so every spiffe:// URI is an "error" to it. A SPIFFE ID is
            # an RFC 3986 URI; accept the finding only if the same URI with https:// passes.
            if (
                desc.finding.code == "pkix.invalid_uri_syntax"
                and value.startswith("spiffe://")
                and validators.url("https://" + value.removeprefix("spiffe://")) is True
            ):
                continue
            found.append((str(desc.finding.severity), desc.finding.code, desc.message or ""))
    return found


def test_every_certificate_kind_lints_clean(ca: CA) -> None:
    kinds = {
        "root": ca.root,
        "intermediate": ca.intermediate,
        "leaf": ca.issue(
            "web.demo.svc", "10.0.0.7", "::1", uris=[SPIFFE], valid_for=HOUR
        ).certificate,
        "empty-subject leaf": ca.issue("a" * 63 + ".demo.svc", valid_for=HOUR).certificate,
        "provisioner": ca.issue(
            uris=["spiffe://cluster.local/hello-mtls/provisioner/operator"],
            common_name="operator",
            valid_for=HOUR,
            client_only=True,
        ).certificate,
        "renewed intermediate": ca.renew_intermediate().intermediate,
    }
    assert {kind: _findings(cert) for kind, cert in kinds.items()} == {kind: [] for kind in kinds}


def test_linter_catches_what_it_should(ec_ca: CA) -> None:
    # The negative twin: a leaf with a URI our allowance does not cover must be reported.
    bad = ec_ca.issue("a.demo", uris=["spiffe://bad host/x"], valid_for=HOUR).certificate
    assert [f[1] for f in _findings(bad)] == ["pkix.invalid_uri_syntax"]


def test_sign_csr_refuses_a_key_it_cannot_use(ec_ca: CA) -> None:
    # load_csr already refuses such CSRs; sign_csr must not trust its caller to have used it.
    pem = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(ed25519.Ed25519PrivateKey.generate(), None)
        .public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(ValueError, match="^csr key type Ed25519PublicKey is not supported"):
        ec_ca.sign_csr(x509.load_pem_x509_csr(pem), "a.demo", valid_for=HOUR)


def test_from_pem_refuses_a_key_it_cannot_use(ec_ca: CA) -> None:
    root, _, intermediate, intermediate_key = ec_ca.to_pem()
    ed_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="^CA key type Ed25519PrivateKey is not supported$"):
        CA.from_pem(root, ed_key, intermediate, intermediate_key)


def test_what_an_issued_leaf_says_of_itself_is_what_its_certificate_says(ec_ca: CA) -> None:
    # The audit trail and the index of issued certificates take these from `Issued`, kept from
    # signing, instead of reading the certificate back.
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    issued = ec_ca.sign_public_key(
        key,
        "web.shop.svc",
        "10.0.0.7",
        "web.shop.svc",
        "fd00::1",
        "api.shop.svc",
        uris=["spiffe://cluster.local/ns/shop/sa/web"],
        valid_for=HOUR,
    )
    cert = issued.certificate
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = sans.get_values_for_type(x509.DNSName)
    ips = [str(a) for a in sans.get_values_for_type(x509.IPAddress)]
    assert (
        issued.names
        == tuple(dns + ips)
        == (
            "web.shop.svc",
            "api.shop.svc",
            "10.0.0.7",
            "fd00::1",
        )
    )
    assert issued.uris == tuple(sans.get_values_for_type(x509.UniformResourceIdentifier))
    assert issued.spiffe_id == "spiffe://cluster.local/ns/shop/sa/web"
    assert issued.public_key_sha256 == public_key_sha256(cert.public_key())
    assert issued.issuer == cert.issuer.rfc4514_string()
