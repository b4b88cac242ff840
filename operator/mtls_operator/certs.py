"""Keys, CSRs and what a Secret's certificate says about itself. Pure functions.

The operator makes every key itself (the CA never sees a private key) and reads Secrets back
with `inspect`, so every decision about a Secret is taken on what it really holds, not on
annotations someone could have edited.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mtls_context.layout import CA, CERT, CRL, KEY, POLICY, federated_bundles
from mtls_operator import screening
from mtls_operator.claims import Claim

__all__ = [
    "Inspection",
    "crl_serials",
    "inspect",
    "needs_renewal",
    "new_key_and_csr",
    "normalize_name",
    "sha256_hex",
]


def new_key_and_csr(claim: Claim) -> tuple[bytes, bytes]:
    """A fresh ECDSA P-256 key (PKCS#8 PEM) and a CSR for ``claim``'s names (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in claim.names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    # X.509 caps a CN at 64 characters (RFC 5280 ub-common-name) while a DNS name may have 253:
    # a longer name goes only into the SAN, which is what verifiers check anyway.
    primary = claim.names[0]
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, primary)] if len(primary) <= 64 else []
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of ``data``: how the CA names its bundle (``bundle_sha256``)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Inspection:
    """What a Secret's data holds. ``problem`` is set when it cannot be used at all."""

    problem: str | None
    serial: str = ""
    not_before: datetime.datetime | None = None
    not_after: datetime.datetime | None = None
    intermediate_sha256: str = ""
    """Fingerprint of the certificate that signed the leaf (second in ``tls.crt``)."""
    bundle_sha256: str = ""
    policy: bytes = b""
    names: frozenset[str] = frozenset()
    """The leaf's DNS names and IP addresses (`normalize_name` applied)."""
    uris: tuple[str, ...] = ()
    """The leaf's URI SANs: its SPIFFE ID."""
    crl_sha256: str = ""
    """`sha256_hex` of its ``ca.crl``; "" without one."""
    federated_sha256: str = ""
    """`federated_digest` of its federated bundle files."""


def inspect(data: Mapping[str, bytes]) -> Inspection:
    """Read a Secret's decoded ``data``: is it complete, does the key match, who signed it.

    Never raises for bad content: a missing file, garbage, a file larger than hello-mtls writes,
    a key of a type or size it does not make (`screening`), a key that does not match the leaf or
    a leaf not signed by the certificate after it all come back as ``problem``. Whoever may write
    Secrets in the namespace chooses the content, so nothing is parsed before it is bounded.
    """
    missing = [name for name in (CERT, KEY, CA, POLICY) if not data.get(name)]
    if missing:
        return Inspection(problem=f"missing {', '.join(missing)}")
    problem = screening.oversized(data) or screening.too_many_certificates(data[CERT])
    if problem:
        return Inspection(problem=problem)
    try:
        key_der = screening.private_key_der(data[KEY])
    except ValueError as error:
        return Inspection(problem=str(error))
    try:
        chain = x509.load_pem_x509_certificates(data[CERT])
        # Without RSA key validation (p and q tested for primality and more: seconds for large
        # keys, with the GIL held), which buys nothing here: the key is only compared with the
        # leaf's public key, never used to sign or decrypt, and a key whose private half does
        # not fit its public half breaks only the TLS of the pods that mount this Secret, which
        # whoever can write it can break anyway.
        key = serialization.load_der_private_key(
            key_der, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion):
        return Inspection(problem="tls.crt or tls.key is not valid PEM")
    if len(chain) < 2:
        return Inspection(problem="tls.crt holds no intermediate")
    if any(c.serial_number <= 0 for c in chain):
        # cryptography 51 only warns on loading one (a later release refuses it: ValueError).
        return Inspection(problem="tls.crt holds a certificate whose serial is not positive")
    leaf, intermediate = chain[0], chain[1]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        leaf_public = leaf.public_key().public_bytes(serialization.Encoding.DER, public)
        names, uris = _names(leaf), _uris(leaf)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return Inspection(problem="tls.crt is not a certificate the operator can read")
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != leaf_public:
        return Inspection(problem="tls.key does not match tls.crt")
    try:
        leaf.verify_directly_issued_by(intermediate)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return Inspection(problem="tls.crt is not signed by its intermediate")
    return Inspection(
        problem=None,
        serial=f"{leaf.serial_number:x}",
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        intermediate_sha256=intermediate.fingerprint(hashes.SHA256()).hex(),
        bundle_sha256=sha256_hex(data[CA]),
        policy=data[POLICY],
        names=names,
        uris=uris,
        crl_sha256=sha256_hex(data[CRL]) if data.get(CRL) else "",
        federated_sha256=federated_digest(data),
    )


def federated_digest(files: Mapping[str, bytes]) -> str:
    """One digest of the federated bundle files (``federated-<trust domain>.crt``) among
    ``files``, names included; "" when there are none."""
    found = federated_bundles(files)
    if not found:
        return ""
    digest = hashlib.sha256()
    for name in sorted(found.values()):
        digest.update(name.encode() + b"\0" + sha256_hex(files[name]).encode() + b"\0")
    return digest.hexdigest()


def crl_serials(crl_pem: bytes) -> frozenset[str]:
    """The serials (lower-case hex) every CRL of ``crl_pem`` (``GET /crl``) lists.

    Raises:
        ValueError: if a CRL does not parse.
    """
    end = b"-----END X509 CRL-----"
    serials: set[str] = set()
    for block in crl_pem.split(end):
        if block.strip():
            crl = x509.load_pem_x509_crl(block.strip() + end)
            serials.update(f"{entry.serial_number:x}" for entry in crl)
    return frozenset(serials)


def normalize_name(name: str) -> str:
    """A DNS name in lower case, an IP address in its canonical text form."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def _names(leaf: x509.Certificate) -> frozenset[str]:
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    found = [*sans.get_values_for_type(x509.DNSName)]
    found += [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    return frozenset(normalize_name(name) for name in found)


def _uris(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(sans.get_values_for_type(x509.UniformResourceIdentifier))


def needs_renewal(
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    now: datetime.datetime,
    fraction: float,
) -> bool:
    """Whether ``fraction`` of the certificate's lifetime has passed at ``now``.

    Raises:
        ValueError: if ``fraction`` is not in (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"renewal fraction {fraction} is not in (0, 1]")
    return now >= not_before + (not_after - not_before) * fraction
