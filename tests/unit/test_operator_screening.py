"""What a Secret's files may hold before cryptography parses them (`mtls_operator.screening`),
against hostile input: keys of every type and size, junk, damaged DER."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mtls_context.layout import CA, CERT, KEY, POLICY
from mtls_operator.screening import (
    MAX_BYTES,
    MAX_CHAIN_CERTIFICATES,
    RSA_BITS,
    oversized,
    private_key_der,
    too_many_certificates,
)
from support import hostile_secrets as hostile

MADE = "hello-mtls makes only ECDSA P-256/P-384 and RSA 2048/3072/4096 keys"


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _der(pem: bytes) -> bytes:
    """The DER of a one-block PEM, without judging it."""
    return base64.b64decode(b"".join(pem.strip().split(b"\n")[1:-1]))


P256 = _pkcs8(ec.generate_private_key(ec.SECP256R1()))
KEYS = {  # a key of each kind, PKCS#8 PEM
    "P-256": P256,
    "P-384": _pkcs8(ec.generate_private_key(ec.SECP384R1())),
    "P-521": hostile.p521(),
    "RSA-2048": hostile.rsa_with_modulus(2048),
    "RSA-4096": hostile.rsa_with_modulus(4096),
    "RSA-16384": hostile.rsa_with_modulus(16384),
    "Ed25519": hostile.ed25519_key(),
    "DSA": hostile.dsa(),
}


@pytest.mark.parametrize("name", ["P-256", "P-384", "RSA-2048", "RSA-4096"])
def test_the_keys_hello_mtls_makes_or_signs_pass_as_they_are(name: str) -> None:
    der = private_key_der(KEYS[name])
    assert hostile.pem(der) == KEYS[name]


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(16, 16384), low=st.integers(0, 2**64))
@example(bits=2048, low=0)
@example(bits=3072, low=0)
@example(bits=4096, low=0)
@example(bits=4097, low=0)
def test_an_rsa_key_passes_exactly_when_its_modulus_has_a_size_hello_mtls_uses(
    bits: int, low: int
) -> None:
    """The size is read from the modulus in the DER, however small the rest of the key is."""
    pem = hostile.rsa_with_modulus(bits, odd_bits=low)
    if bits in RSA_BITS:
        assert private_key_der(pem)
    else:
        with pytest.raises(ValueError, match=f"^tls.key is an RSA key of {bits} bits; {MADE}$"):
            private_key_der(pem)


@pytest.mark.parametrize(
    ("algorithm", "parameters", "problem"),
    [
        (bytes.fromhex("2a864886f70d01010a"), b"", "an RSA-PSS key"),
        (bytes.fromhex("2a864886f70d010301"), b"", "a Diffie-Hellman key"),
        (bytes.fromhex("2b656f"), b"", "an X448 key"),
        (bytes.fromhex("2a03"), b"", "a key of algorithm 1.2.3"),
        (
            bytes.fromhex("2a8648ce3d0201"),
            hostile.der(hostile.SEQUENCE, hostile.der_integer(1)),
            "an ECDSA key without a named curve",
        ),
        (
            bytes.fromhex("2a8648ce3d0201"),
            hostile.der(hostile.OID, bytes.fromhex("2b8104000a")),
            "an ECDSA key on curve secp256k1",
        ),
    ],
)
def test_other_algorithms_and_curves_are_named_and_refused(
    algorithm: bytes, parameters: bytes, problem: str
) -> None:
    pem = hostile.pem(hostile.pkcs8(algorithm, parameters, hostile.der_integer(1)))
    with pytest.raises(ValueError, match=f"^tls.key is {problem}; {MADE}$"):
        private_key_der(pem)


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"junk",
        P256.replace(b"\n-----END", b"!\n-----END"),  # not base64
        b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        hostile.pem(b"\x30\x80\x02\x01\x00\x00\x00"),  # an indefinite length (BER, not DER)
        hostile.pem(b"\x30\x84\x00\x00\x00\x03\x02\x01\x00"),  # a 4-byte length
        hostile.pem(hostile.der(hostile.SEQUENCE, hostile.der_integer(2))),  # version 2
        hostile.pem(_der(P256)[:-1]),  # cut short
    ],
)
def test_what_is_not_one_pkcs8_key_is_refused(pem: bytes) -> None:
    with pytest.raises(ValueError, match=r"^tls.key (is not PEM|is not a PKCS#8 key)$"):
        private_key_der(pem)


def test_trailing_bytes_after_the_key_are_refused() -> None:
    der = private_key_der(P256)
    with pytest.raises(ValueError, match=r"^tls.key is not a PKCS#8 key$"):
        private_key_der(hostile.pem(der + b"\x05\x00"))


@settings(max_examples=500, deadline=None)
@given(junk=st.binary(max_size=4096), wrap=st.booleans())
def test_junk_only_ever_raises_value_error(junk: bytes, wrap: bool) -> None:
    with pytest.raises(ValueError):
        private_key_der(hostile.pem(junk) if wrap else junk)


@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_what_passes_is_what_cryptography_loads(data: st.DataObject) -> None:
    """A key of any kind with bytes of its DER changed, cut or added: if screening lets it pass
    and cryptography loads it, cryptography sees the type and size screening saw (the two
    parsers never disagree on what reaches RSA key loading)."""
    pem = KEYS[data.draw(st.sampled_from(sorted(KEYS)))]
    der = bytearray(_der(pem))
    at = data.draw(st.integers(0, len(der) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=4))
    how = data.draw(st.sampled_from(["none", "change", "cut", "grow"]))
    if how == "change":
        der[at] ^= junk[0] or 1
    elif how == "cut":
        del der[at:]
    elif how == "grow":
        der[at:at] = junk
    try:
        passed = private_key_der(hostile.pem(bytes(der)))
    except ValueError:
        return
    try:
        key = serialization.load_der_private_key(
            passed, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.key_size in RSA_BITS
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey), type(key)
        assert key.curve.name in ("secp256r1", "secp384r1")


def test_every_file_has_a_limit_and_the_first_one_over_is_named() -> None:
    assert set(MAX_BYTES) == {CERT, KEY, CA, POLICY}
    at_limit = {name: b"x" * limit for name, limit in MAX_BYTES.items()}
    assert oversized(at_limit) is None
    assert oversized({**at_limit, CA: b"x" * (MAX_BYTES[CA] + 1)}) == (
        f"ca.crt is {MAX_BYTES[CA] + 1:,} bytes, more than hello-mtls ever writes there"
        f" ({MAX_BYTES[CA]:,})"
    )


def test_a_chain_is_counted_by_its_pem_blocks_of_any_kind() -> None:
    block = hostile.certificate()
    assert too_many_certificates(block * MAX_CHAIN_CERTIFICATES) is None
    other = hostile.pem(b"\x00", "X509 CRL")
    assert too_many_certificates(block * MAX_CHAIN_CERTIFICATES + other) == (
        f"tls.crt holds {MAX_CHAIN_CERTIFICATES + 1} PEM blocks, more than the"
        f" {MAX_CHAIN_CERTIFICATES} of a chain hello-mtls writes"
    )
