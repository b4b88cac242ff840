"""What a Secret's files may hold before cryptography parses them. Pure functions.

Anyone who may write Secrets in a namespace the operator serves chooses what `certs.inspect`
reads, and parsing is not free: cryptography loads an RSA key with RSA key validation, which
holds the GIL for seconds for an RSA-8192 key (3 to 5 s) and half a minute or more for an
RSA-16384 one, stalling every thread of the operator. So each file is first held to the size
hello-mtls ever writes there (`MAX_BYTES`, `MAX_CHAIN_CERTIFICATES`), and the key must be the
one unencrypted PKCS#8 block the operator writes, of a type and size hello-mtls makes or the CA
signs (`ECDSA_CURVES`, `RSA_BITS`), as read from its DER: no other key reaches cryptography.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from mtls_context.layout import CA, CERT, KEY, POLICY

__all__ = [
    "ECDSA_CURVES",
    "MAX_BYTES",
    "MAX_CHAIN_CERTIFICATES",
    "RSA_BITS",
    "oversized",
    "private_key_der",
    "too_many_certificates",
]

MAX_BYTES = {
    KEY: 4096,  # an RSA-4096 key, the largest, is 3,272 bytes of PKCS#8 PEM
    CERT: 32 * 1024,  # 20 names of 253 characters, an RSA-4096 key, RSA CAs: 9,664 bytes
    CA: 64 * 1024,  # one root, two during a root rotation: about 1 KB each
    POLICY: 16 * 1024,  # 250 bytes
}
"""The most bytes each file of a managed Secret may hold."""
MAX_CHAIN_CERTIFICATES = 4
"""The CA answers with the leaf and its intermediate; two more leave room for a chain above it."""
ECDSA_CURVES = frozenset(
    {
        bytes.fromhex("2a8648ce3d030107"),  # P-256 (1.2.840.10045.3.1.7): the operator's keys
        bytes.fromhex("2b81040022"),  # P-384 (1.3.132.0.34)
    }
)
"""The named curves of ECDSA keys, as their OIDs' DER content."""
RSA_BITS = (2048, 3072, 4096)
"""The CA makes RSA 2048 and 3072 keys (``--key-type``) and signs keys of these sizes."""

_MADE = "hello-mtls makes only ECDSA P-256/P-384 and RSA 2048/3072/4096 keys"
_EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")  # 1.2.840.10045.2.1
_RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1
_NAMES = {  # keys someone may well try, named in the problem; others by their OID
    bytes.fromhex("2a8648ce380401"): "a DSA key",
    bytes.fromhex("2a864886f70d01010a"): "an RSA-PSS key",
    bytes.fromhex("2a864886f70d010301"): "a Diffie-Hellman key",
    bytes.fromhex("2b6570"): "an Ed25519 key",
    bytes.fromhex("2b6571"): "an Ed448 key",
    bytes.fromhex("2b656e"): "an X25519 key",
    bytes.fromhex("2b656f"): "an X448 key",
}
_CURVE_NAMES = {
    bytes.fromhex("2b81040023"): "secp521r1",
    bytes.fromhex("2b8104000a"): "secp256k1",
    bytes.fromhex("2a8648ce3d030101"): "secp192r1",
}
_SEQUENCE, _INTEGER, _OCTET_STRING, _OID = 0x30, 0x02, 0x04, 0x06
_PKCS8_PEM = re.compile(
    rb"\s*-----BEGIN PRIVATE KEY-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END PRIVATE KEY-----\s*"
)
_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----")
_BEGIN = b"-----BEGIN "


def oversized(data: Mapping[str, bytes]) -> str | None:
    """The first file of ``data`` larger than `MAX_BYTES` allows, as a problem; None if none."""
    for name, limit in MAX_BYTES.items():
        size = len(data.get(name, b""))
        if size > limit:
            return f"{name} is {size:,} bytes, more than hello-mtls ever writes there ({limit:,})"
    return None


def too_many_certificates(chain_pem: bytes) -> str | None:
    """A problem if ``chain_pem`` holds more PEM blocks (of any kind: each is a parse) than
    `MAX_CHAIN_CERTIFICATES`; None if not."""
    blocks = chain_pem.count(_BEGIN)
    if blocks > MAX_CHAIN_CERTIFICATES:
        return (
            f"{CERT} holds {blocks} PEM blocks, more than the {MAX_CHAIN_CERTIFICATES} of a chain"
            " hello-mtls writes"
        )
    return None


def private_key_der(key_pem: bytes) -> bytes:
    """The DER of the one unencrypted PKCS#8 key in ``key_pem``, if its type and size are ones
    hello-mtls makes or signs, as its DER says before any parser sees it: the algorithm, and the
    curve or the size of the RSA modulus.

    Raises:
        ValueError: why not, e.g. ``tls.key is an RSA key of 16384 bits; hello-mtls makes
            only ...``.
    """
    found = _PKCS8_PEM.fullmatch(key_pem)
    if found is None:
        labels = [label.decode() for label in _LABEL.findall(key_pem)[:3]]
        if labels in ([], ["PRIVATE KEY"]):
            raise ValueError(f"{KEY} is not PEM")
        raise ValueError(
            f"{KEY} holds {', '.join(labels)}; the operator writes one unencrypted PKCS#8 key"
            " (PRIVATE KEY)"
        )
    try:
        der = base64.b64decode(b"".join(found[1].split()), validate=True)
    except binascii.Error:
        raise ValueError(f"{KEY} is not PEM") from None
    try:
        algorithm, parameters, private_key = _pkcs8(der)
    except (ValueError, IndexError):
        raise ValueError(f"{KEY} is not a PKCS#8 key") from None
    if algorithm == _EC_PUBLIC_KEY:
        _check_curve(parameters)
    elif algorithm == _RSA_ENCRYPTION:
        bits = _rsa_modulus_bits(private_key)
        if bits not in RSA_BITS:
            raise ValueError(f"{KEY} is an RSA key of {bits} bits; {_MADE}")
    else:
        name = _NAMES.get(algorithm) or f"a key of algorithm {_dotted(algorithm)}"
        raise ValueError(f"{KEY} is {name}; {_MADE}")
    return der


def _check_curve(parameters: bytes) -> None:
    try:
        start, end = _element(parameters, 0, _OID)
    except (ValueError, IndexError):
        raise ValueError(f"{KEY} is an ECDSA key without a named curve; {_MADE}") from None
    curve = parameters[start:end]
    if end != len(parameters) or curve not in ECDSA_CURVES:
        name = _CURVE_NAMES.get(curve, _dotted(curve))
        raise ValueError(f"{KEY} is an ECDSA key on curve {name}; {_MADE}")


def _rsa_modulus_bits(private_key: bytes) -> int:
    """The modulus size of a PKCS#1 RSAPrivateKey: SEQUENCE { version, modulus, ... }."""
    try:
        start, _ = _element(private_key, 0, _SEQUENCE)
        _, after_version = _element(private_key, start, _INTEGER)
        modulus_start, modulus_end = _element(private_key, after_version, _INTEGER)
    except (ValueError, IndexError):
        raise ValueError(f"{KEY} is not a PKCS#8 key") from None
    return int.from_bytes(private_key[modulus_start:modulus_end], "big").bit_length()


def _pkcs8(der: bytes) -> tuple[bytes, bytes, bytes]:
    """The algorithm OID, its parameters (DER, possibly empty) and the private key (the
    OCTET STRING's content) of a PKCS#8 PrivateKeyInfo: SEQUENCE { version INTEGER,
    AlgorithmIdentifier SEQUENCE { OID, parameters }, privateKey OCTET STRING, ... }."""
    start, end = _element(der, 0, _SEQUENCE)
    if end != len(der):
        raise ValueError("bytes after the key")
    version_start, version_end = _element(der, start, _INTEGER)
    if der[version_start:version_end] not in (b"\x00", b"\x01"):
        raise ValueError("unknown version")
    algorithm_start, algorithm_end = _element(der, version_end, _SEQUENCE)
    oid_start, oid_end = _element(der, algorithm_start, _OID)
    key_start, key_end = _element(der, algorithm_end, _OCTET_STRING)
    return der[oid_start:oid_end], der[oid_end:algorithm_end], der[key_start:key_end]


def _element(der: bytes, at: int, tag: int) -> tuple[int, int]:
    """Where the content of the DER element at ``at`` starts and ends; it must have ``tag``.

    Raises:
        ValueError: another tag, an indefinite or overlong length, or one past the end.
        IndexError: ``der`` ends within the tag or length.
    """
    if der[at] != tag:
        raise ValueError(f"tag {der[at]:#x} where {tag:#x} was expected")
    length, at = der[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 2:  # a key file of MAX_BYTES needs 2 length bytes at most
            raise ValueError("indefinite or overlong length")
        length = int.from_bytes(der[at : at + count], "big")
        at += count
    if at + length > len(der):
        raise ValueError("length past the end")
    return at, at + length


def _dotted(oid: bytes) -> str:
    """The dotted form of an OID's DER content (its first 32 bytes), for a problem message."""
    arcs, value = [], 0
    for byte in oid[:32]:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        return "?"
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])
