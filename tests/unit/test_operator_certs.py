"""Keys and CSRs the operator makes, and what `inspect` reads out of a Secret."""

from __future__ import annotations

import base64
import datetime

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID
from hypothesis import given, settings
from hypothesis import strategies as st

from mtls_context.layout import CA, CERT, KEY, POLICY
from mtls_operator.certs import Inspection, inspect, needs_renewal, new_key_and_csr
from mtls_operator.claims import Claim
from support import hostile_secrets as hostile
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


# Hostile Secrets: anyone who may write Secrets in a namespace the operator serves chooses what
# `inspect` reads. What no hello-mtls Secret holds is refused before cryptography parses it.


@pytest.fixture
def unparsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if cryptography is asked to parse a key or a certificate."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("cryptography was asked to parse a file the operator never writes")

    for loader in ("load_pem_private_key", "load_der_private_key"):
        monkeypatch.setattr(serialization, loader, refuse)
    monkeypatch.setattr(x509, "load_pem_x509_certificates", refuse)


GOOD = PKI().data("web.shop")
MADE = "hello-mtls makes only ECDSA P-256/P-384 and RSA 2048/3072/4096 keys"
CHAIN_OF_10000 = hostile.certificate() * 10_000


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        pytest.param(
            hostile.files(hostile.rsa_16384()),
            "tls.key is 13,140 bytes, more than hello-mtls ever writes there (4,096)",
            id="rsa-16384",
        ),
        pytest.param(
            hostile.files(hostile.rsa_with_modulus(16384)),
            f"tls.key is an RSA key of 16384 bits; {MADE}",
            id="rsa-16384-modulus-in-a-small-pem",
        ),
        pytest.param(
            hostile.files(hostile.rsa_with_modulus(8192)),
            f"tls.key is an RSA key of 8192 bits; {MADE}",
            id="rsa-8192",
        ),
        pytest.param(
            hostile.files(hostile.rsa_with_modulus(1024)),
            f"tls.key is an RSA key of 1024 bits; {MADE}",
            id="rsa-1024",
        ),
        pytest.param(hostile.files(hostile.dsa()), f"tls.key is a DSA key; {MADE}", id="dsa"),
        pytest.param(
            hostile.files(hostile.ed25519_key()), f"tls.key is an Ed25519 key; {MADE}", id="ed25519"
        ),
        pytest.param(
            hostile.files(hostile.ed448_key()), f"tls.key is an Ed448 key; {MADE}", id="ed448"
        ),
        pytest.param(
            hostile.files(hostile.x25519_key()), f"tls.key is an X25519 key; {MADE}", id="x25519"
        ),
        pytest.param(
            hostile.files(hostile.p521()),
            f"tls.key is an ECDSA key on curve secp521r1; {MADE}",
            id="p521",
        ),
        pytest.param(
            hostile.files(hostile.encrypted()),
            "tls.key holds ENCRYPTED PRIVATE KEY; the operator writes one unencrypted PKCS#8"
            " key (PRIVATE KEY)",
            id="encrypted",
        ),
        pytest.param(
            hostile.files(hostile.traditional_ec()),
            "tls.key holds EC PRIVATE KEY; the operator writes one unencrypted PKCS#8"
            " key (PRIVATE KEY)",
            id="traditional",
        ),
        pytest.param(
            hostile.files(hostile.rsa_with_modulus(2048) * 2),
            "tls.key holds PRIVATE KEY, PRIVATE KEY; the operator writes one unencrypted PKCS#8"
            " key (PRIVATE KEY)",
            id="two-keys",
        ),
        pytest.param(
            hostile.files(hostile.pem(b"\x30\x03\x02\x01")),
            "tls.key is not a PKCS#8 key",
            id="truncated-der",
        ),
        pytest.param(
            hostile.files(hostile.rsa_with_modulus(2048), chain=CHAIN_OF_10000),
            f"tls.crt is {len(CHAIN_OF_10000):,} bytes, more than hello-mtls ever writes there"
            " (32,768)",
            id="chain-of-10000",
        ),
        pytest.param(
            hostile.files(hostile.rsa_with_modulus(2048), chain=hostile.certificate() * 5),
            "tls.crt holds 5 PEM blocks, more than the 4 of a chain hello-mtls writes",
            id="chain-of-5",
        ),
        pytest.param(
            {**hostile.files(hostile.rsa_with_modulus(2048)), CA: b"x" * (1 << 20)},
            "ca.crt is 1,048,576 bytes, more than hello-mtls ever writes there (65,536)",
            id="huge-bundle",
        ),
        pytest.param(
            {**hostile.files(hostile.rsa_with_modulus(2048)), POLICY: b" " * (1 << 20)},
            "tls-policy.json is 1,048,576 bytes, more than hello-mtls ever writes there (16,384)",
            id="huge-policy",
        ),
    ],
)
@pytest.mark.usefixtures("unparsed")
def test_a_hostile_secret_is_refused_before_cryptography_parses_it(
    files: dict[str, bytes], problem: str
) -> None:
    assert inspect(files).problem == problem


def test_a_key_of_every_type_hello_mtls_makes_or_signs_is_read() -> None:
    """ECDSA P-256 (the operator's), P-384, and RSA 2048, 3072 and 4096 (the CA's key types and
    what it signs); RSA keys are read without RSA key validation (these have no real primes)."""
    pki = PKI()
    keys = [
        serialization.load_pem_private_key(
            hostile.rsa_with_modulus(bits), None, unsafe_skip_rsa_key_validation=True
        )
        for bits in (2048, 3072, 4096)
    ]
    keys += [ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())]
    for key in keys:
        assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        found = inspect(pki.data("web.shop", key=key))
        assert found.problem is None, (key, found.problem)


def test_the_largest_secret_hello_mtls_writes_is_within_every_limit() -> None:
    """20 names of 253 characters (the rules' most), an RSA-4096 key, an RSA intermediate."""
    pki = PKI(key_type=trustme.KeyType.RSA)
    names = [f"{i:02d}{'a' * 59}.{'b' * 63}.{'c' * 63}.{'d' * 58}.shop" for i in range(20)]
    assert all(len(name) == 253 for name in names)
    key = serialization.load_pem_private_key(
        hostile.rsa_with_modulus(4096), None, unsafe_skip_rsa_key_validation=True
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    data = pki.data(*names, key=key)
    found = inspect(data)
    assert found.problem is None
    assert len(found.names) == 20


def test_a_leaf_with_a_malformed_extension_is_a_problem_not_an_exception() -> None:
    pki = PKI()
    bad_san = x509.UnrecognizedExtension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x87\x01\x01"
    )
    found = inspect(pki.data("web.shop", extension=bad_san))
    assert found.problem == "tls.crt is not a certificate the operator can read"


@settings(max_examples=300, deadline=None)
@given(
    cert=st.binary(max_size=2048),
    key=st.binary(max_size=2048),
    bundle=st.binary(max_size=64),
    policy=st.binary(max_size=64),
)
def test_inspect_never_raises_on_junk(
    cert: bytes, key: bytes, bundle: bytes, policy: bytes
) -> None:
    found = inspect({CERT: cert, KEY: key, CA: bundle, POLICY: policy})
    assert found.problem is not None


_NON_POSITIVE_SERIAL = (
    "ignore:Parsed a serial number which wasn't positive:"
    "cryptography.utils.CryptographyDeprecationWarning"
)
"""cryptography 51 warns when it loads such a certificate, and a later release will refuse it;
`inspect` refuses it either way (`test_a_serial_that_is_not_positive_is_a_problem`)."""


def test_a_certificate_of_no_known_version_is_a_problem() -> None:
    """cryptography raises InvalidVersion for it, which is not a ValueError."""
    data = PKI().data("web.shop")
    first, rest = data[CERT].split(b"\n-----END CERTIFICATE-----\n", 1)
    der = bytearray(base64.b64decode(b"".join(first.splitlines()[1:])))
    version = der.index(b"\xa0\x03\x02\x01\x02") + 4
    der[version] = 3  # v4: there is none
    found = inspect({**data, CERT: hostile.pem(bytes(der), "CERTIFICATE") + rest})
    assert found.problem == "tls.crt or tls.key is not valid PEM"


@pytest.mark.filterwarnings(_NON_POSITIVE_SERIAL)
def test_a_serial_that_is_not_positive_is_a_problem() -> None:
    data = PKI().data("web.shop")
    first, rest = data[CERT].split(b"\n-----END CERTIFICATE-----\n", 1)
    der = bytearray(base64.b64decode(b"".join(first.splitlines()[1:])))
    serial = der.index(b"\xa0\x03\x02\x01\x02\x02") + 7  # after version v3, INTEGER, length
    # A negative serial, the DER otherwise intact: 0x80 sets the sign bit and, unlike a first
    # byte of 0xFF (what `|= 0x80` makes of 0x7F), never makes the encoding non-minimal.
    der[serial] = 0x80
    found = inspect({**data, CERT: hostile.pem(bytes(der), "CERTIFICATE") + rest})
    assert found.problem == "tls.crt holds a certificate whose serial is not positive"


@pytest.mark.filterwarnings(_NON_POSITIVE_SERIAL)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_inspect_never_raises_on_a_damaged_secret(data: st.DataObject) -> None:
    """A good Secret with its key's DER or its leaf's changed, cut short or grown."""
    name = data.draw(st.sampled_from([KEY, CERT]))
    label = "PRIVATE KEY" if name == KEY else "CERTIFICATE"
    first, rest = GOOD[name].split(b"\n-----END ", 1)
    der = bytearray(base64.b64decode(b"".join(first.splitlines()[1:])))
    at = data.draw(st.integers(0, len(der) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=8))
    how = data.draw(st.sampled_from(["change", "cut", "grow"]))
    if how == "change":
        der[at] ^= junk[0] or 1
    elif how == "cut":
        del der[at:]
    else:
        der[at:at] = junk
    rest = rest.split(b"-----\n", 1)[1]  # the chain's other certificates
    found = inspect({**GOOD, name: hostile.pem(bytes(der), label) + rest})
    assert isinstance(found, Inspection)
