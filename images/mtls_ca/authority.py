"""The certificate authority core: a root, its intermediate, and the leaves they sign.

Modelled on trustme: a few public names, frozen results, built-in exceptions with short exact
messages. Only ``cryptography`` here; state, policy and the web service live in other modules.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtls_contract import durations, name_rules

from . import name_constraints

__all__ = [
    "CA",
    "Issued",
    "KeyType",
    "fingerprint",
    "public_key_sha256",
    "load_csr",
    "load_csr_public_key",
    "load_private_key",
    "load_public_key",
    "renewal_due",
]

ROOT_VALIDITY = datetime.timedelta(days=3650)
INTERMEDIATE_VALIDITY = datetime.timedelta(days=365)
# RFC 5280 caps serials at 20 octets; 159 random bits keep the DER integer positive and in range.
_SERIAL_BITS = 159
# X.520 ub-common-name: a longer first name stays in the SAN only.
_CN_MAX = 64


class KeyType(enum.Enum):
    """Key algorithms the CA generates and accepts."""

    ECDSA_P256 = "ecdsa-p256"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"

    def _generate(self) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
        if self is KeyType.ECDSA_P256:
            return ec.generate_private_key(ec.SECP256R1())
        bits = 2048 if self is KeyType.RSA_2048 else 3072
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)


_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
_ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)
_ACCEPTED_RSA_BITS = (2048, 3072, 4096)


@dataclass(frozen=True)
class Issued:
    """A leaf certificate with its chain.

    This type has no public constructor; you get one from `CA.issue` or `CA.sign_csr`.

    Attributes:
        chain_pem: the leaf followed by the intermediate, PEM.
        key_pem: the leaf's private key (PKCS#8 PEM) when the CA made it, else ``None``.
        certificate: the leaf.
        public_key_sha256: `public_key_sha256` of the leaf's key.
        names: the leaf's DNS names, then its IP addresses, as text.
        uris: the leaf's URI names.
        issuer: the leaf's issuer (the intermediate's subject), RFC 4514 text.
    """

    # What the audit trail and the index of issued certificates say of a leaf is kept from
    # signing it: reading it back from the certificate would load its key and parse its
    # extensions again, on every signature.
    chain_pem: bytes
    key_pem: bytes | None
    certificate: x509.Certificate
    public_key_sha256: str
    names: tuple[str, ...]
    uris: tuple[str, ...]
    issuer: str

    @cached_property  # each call of the certificate's getter builds its value anew
    def serial(self) -> int:
        return self.certificate.serial_number

    @cached_property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def spiffe_id(self) -> str | None:
        """The first ``spiffe://`` URI name, if any."""
        return next((u for u in self.uris if u.startswith("spiffe://")), None)


@dataclass(frozen=True)
class CA:
    """A root CA and the intermediate that signs leaves for it.

    Create one with `CA.create` or load one with `CA.from_pem`; under an organisation's root see
    `mtls_ca.upstream`. A key is None where this process does not hold it: a signer pod holds no
    root key, and only the signing intermediate's key (`CA.without_keys`).

    Attributes:
        root: the trust anchor, what ``ca.crt`` holds.
        root_key: the key of the intermediate's issuer: the root's own, or under an
            organisation's root the key of its certificate given on a volume (``chain[0]`` when
            that is not the root itself); None when not held (a signer, an imported intermediate).
        intermediate: the CA that signs leaves.
        intermediate_key: its key.
        chain: the organisation's certificates between the intermediate and the root, the
            intermediate's issuer first; empty when the root signed the intermediate.
    """

    root: x509.Certificate
    root_key: _PrivateKey | None
    intermediate: x509.Certificate
    intermediate_key: _PrivateKey | None
    chain: tuple[x509.Certificate, ...] = ()

    @classmethod
    def create(
        cls,
        *,
        organization: str = "hello-mtls",
        key_type: KeyType = KeyType.ECDSA_P256,
        root_valid_for: datetime.timedelta = ROOT_VALIDITY,
        intermediate_valid_for: datetime.timedelta = INTERMEDIATE_VALIDITY,
        now: datetime.datetime | None = None,
    ) -> CA:
        """Create a new root and an intermediate signed by it.

        Args:
            organization: the O= of both CA subjects.
            key_type: the algorithm of both CA keys.
            root_valid_for: lifetime of the root.
            intermediate_valid_for: lifetime of the intermediate (capped at the root's).
            now: the issuing time; defaults to the current time.
        """
        now = now or _utcnow()
        root_key = key_type._generate()
        root_name = _ca_name(organization, "root", root_key.public_key())
        root = (
            _builder(root_name, root_name, root_key.public_key(), now, now + root_valid_for)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(_ski(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        return cls._with_new_intermediate(
            root, (), root_key, organization, key_type, intermediate_valid_for, now
        )

    @classmethod
    def create_under(
        cls,
        root: x509.Certificate,
        chain: tuple[x509.Certificate, ...],
        issuer_key: _PrivateKey,
        *,
        key_type: KeyType = KeyType.ECDSA_P256,
        intermediate_valid_for: datetime.timedelta = INTERMEDIATE_VALIDITY,
        now: datetime.datetime | None = None,
    ) -> CA:
        """Create an intermediate under an organisation's certificate (`CA.chain`).

        Args:
            root: the organisation's root.
            chain: the certificate whose key is ``issuer_key`` and those above it, up to (not
                including) the root; empty when that certificate is the root.
            issuer_key: the key that signs the intermediate.
            key_type: the algorithm of the intermediate's key.
            intermediate_valid_for: its lifetime (capped at the organisation's certificates').
            now: the issuing time; defaults to the current time.
        """
        return cls._with_new_intermediate(
            root,
            chain,
            issuer_key,
            "hello-mtls",
            key_type,
            intermediate_valid_for,
            now or _utcnow(),
        )

    @classmethod
    def from_pem(
        cls,
        root_pem: bytes,
        root_key_pem: bytes | None,
        intermediate_pem: bytes,
        intermediate_key_pem: bytes | None,
        chain_pem: bytes = b"",
    ) -> CA:
        """Load a CA saved with `CA.to_pem` (a key None: not held; ``chain_pem`` the `CA.chain`).

        Raises:
            ValueError: if a certificate or key does not parse, or a key is not of a known type.
        """
        return cls(
            root=x509.load_pem_x509_certificate(root_pem),
            root_key=_load_key(root_key_pem) if root_key_pem is not None else None,
            intermediate=x509.load_pem_x509_certificate(intermediate_pem),
            intermediate_key=(
                _load_key(intermediate_key_pem) if intermediate_key_pem is not None else None
            ),
            chain=tuple(x509.load_pem_x509_certificates(chain_pem)) if chain_pem else (),
        )

    def to_pem(self) -> tuple[bytes, bytes | None, bytes, bytes | None]:
        """Return ``(root, root key, intermediate, intermediate key)`` as PEM, for `CA.from_pem`."""
        return (
            self.root.public_bytes(serialization.Encoding.PEM),
            _key_pem(self.root_key) if self.root_key is not None else None,
            self.intermediate.public_bytes(serialization.Encoding.PEM),
            _key_pem(self.intermediate_key) if self.intermediate_key is not None else None,
        )

    def without_keys(self, *, keep_intermediate: bool) -> CA:
        """This CA without its root key, and without its intermediate's unless asked to keep it:
        what a signer pod may hold."""
        return replace(
            self,
            root_key=None,
            intermediate_key=self.intermediate_key if keep_intermediate else None,
        )

    @property
    def key_type(self) -> KeyType:
        """The algorithm of the CA keys."""
        return _key_type_of(self.intermediate.public_key())

    # A CA never changes (a new generation or intermediate is a new CA), so what every answer
    # derives from its certificates is computed once per CA, not per request.
    @cached_property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    @cached_property
    def intermediate_pem(self) -> bytes:
        return self.intermediate.public_bytes(serialization.Encoding.PEM)

    @cached_property
    def chain_pem(self) -> bytes:
        """What follows a leaf in its chain: the intermediate, then `CA.chain`."""
        return self.intermediate_pem + b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in self.chain
        )

    @property
    def issuer(self) -> x509.Certificate:
        """The certificate that signs intermediates (``root_key`` is its key)."""
        return self.chain[0] if self.chain else self.root

    @cached_property
    def name_constraints(self) -> name_constraints.Constraints | None:
        """The organisation's name constraints over this CA's leaves; None when there are none."""
        return name_constraints.Constraints.of([self.intermediate, *self.chain, self.root])

    @cached_property
    def intermediate_sha256(self) -> str:
        """`fingerprint` of the intermediate."""
        return fingerprint(self.intermediate)

    @cached_property
    def _leaf_aki(self) -> x509.AuthorityKeyIdentifier:
        return _aki(self.intermediate)

    @cached_property
    def _leaf_issuer(self) -> str:
        return self.intermediate.subject.rfc4514_string()

    @property
    def signed_aki(self) -> x509.AuthorityKeyIdentifier:
        """The authorityKeyIdentifier of what the intermediate signs (leaves, CRLs)."""
        return self._leaf_aki

    def renew_intermediate(
        self,
        *,
        valid_for: datetime.timedelta = INTERMEDIATE_VALIDITY,
        now: datetime.datetime | None = None,
    ) -> CA:
        """Return this CA with a fresh intermediate (new key) under the same issuer.

        Raises:
            ValueError: if this CA does not hold its issuer's key (a signer's, an imported one).
        """
        if self.root_key is None:
            raise ValueError("this CA does not hold its root key: the root holder renews it")
        organization = self.intermediate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        org = str(organization[0].value) if organization else "hello-mtls"
        return self._with_new_intermediate(
            self.root, self.chain, self.root_key, org, self.key_type, valid_for, now or _utcnow()
        )

    def issue(
        self,
        *names: str,
        uris: Sequence[str] = (),
        valid_for: datetime.timedelta,
        key_type: KeyType = KeyType.ECDSA_P256,
        client_only: bool = False,
        common_name: str | None = None,
        now: datetime.datetime | None = None,
    ) -> Issued:
        """Generate a key and issue a leaf certificate for it.

        Args:
            *names: DNS names and IP addresses; the first is also the subject CN.
            uris: URI SANs, e.g. a SPIFFE ID.
            valid_for: lifetime; capped at the intermediate's expiry.
            key_type: the algorithm of the new key.
            client_only: EKU clientAuth only (provisioner credentials) instead of both.
            common_name: subject CN when it is not the first name.
            now: the issuing time; defaults to the current time.

        Raises:
            ValueError: if there is no name, URI or common name at all.
        """
        key = key_type._generate()
        issued = self._sign(key.public_key(), names, uris, valid_for, client_only, common_name, now)
        return replace(issued, key_pem=_key_pem(key))

    def sign_csr(
        self,
        csr: x509.CertificateSigningRequest,
        *names: str,
        uris: Sequence[str] = (),
        valid_for: datetime.timedelta,
        now: datetime.datetime | None = None,
    ) -> Issued:
        """Sign the public key of ``csr`` (from `load_csr`) for ``names``.

        Only the key is taken from the CSR; subject and extensions come from the arguments, so
        a caller cannot smuggle in extensions.

        Raises:
            ValueError: if there is no name or URI, or the key is neither ECDSA nor RSA.
        """
        return self.sign_public_key(
            _accepted_key(csr.public_key(), "csr"), *names, uris=uris, valid_for=valid_for, now=now
        )

    def sign_public_key(
        self,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        *names: str,
        uris: Sequence[str] = (),
        valid_for: datetime.timedelta,
        now: datetime.datetime | None = None,
    ) -> Issued:
        """Sign ``public_key`` (from `load_public_key`, or a CSR's) for ``names``.

        Raises:
            ValueError: if there is no name or URI.
        """
        return self._sign(public_key, names, uris, valid_for, False, None, now)

    def _sign(
        self,
        public_key: _PublicKey,
        names: Sequence[str],
        uris: Sequence[str],
        valid_for: datetime.timedelta,
        client_only: bool,
        common_name: str | None,
        now: datetime.datetime | None,
    ) -> Issued:
        if not names and not uris:
            raise ValueError("a certificate needs at least one name")
        if self.intermediate_key is None:
            raise ValueError("this CA does not hold its intermediate's key")
        if self.name_constraints is not None:
            self.name_constraints.check(names, uris)
        now = now or _utcnow()
        not_after = min(now + valid_for, self.intermediate.not_valid_after_utc)
        cn = common_name if common_name is not None else (names[0] if names else None)
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn and len(cn) <= _CN_MAX else []
        )
        sans = [_general_name(n) for n in dict.fromkeys(names)]
        sans += [x509.UniformResourceIdentifier(u) for u in dict.fromkeys(uris)]
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if not client_only:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        builder = _builder(subject, self.intermediate.subject, public_key, now, not_after)
        if sans:
            # RFC 5280 4.2.1.6: the SAN must be critical when the subject is empty.
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=not subject)
        cert = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(public_key), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(_ski(public_key), critical=False)
            .add_extension(self._leaf_aki, critical=False)
            .sign(self.intermediate_key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.chain_pem
        dns = [str(n.value) for n in sans if isinstance(n, x509.DNSName)]
        ips = [str(n.value) for n in sans if isinstance(n, x509.IPAddress)]
        return Issued(
            chain,
            None,
            cert,
            public_key_sha256(public_key),
            tuple(dns + ips),
            tuple(dict.fromkeys(uris)),
            self._leaf_issuer,
        )

    @classmethod
    def _with_new_intermediate(
        cls,
        root: x509.Certificate,
        chain: tuple[x509.Certificate, ...],
        root_key: _PrivateKey,
        organization: str,
        key_type: KeyType,
        valid_for: datetime.timedelta,
        now: datetime.datetime,
    ) -> CA:
        key = key_type._generate()
        issuer = chain[0] if chain else root
        name = _ca_name(organization, "intermediate", key.public_key())
        not_after = min(now + valid_for, *(c.not_valid_after_utc for c in (*chain, root)))
        intermediate = (
            _builder(name, issuer.subject, key.public_key(), now, not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(_ski(key.public_key()), critical=False)
            .add_extension(_aki(issuer), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        return cls(root, root_key, intermediate, key, chain)


def load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and check its self-signature and key type.

    Raises:
        ValueError: with a message saying which of the three is wrong.
    """
    return _load_csr(pem)[0]


def load_csr_public_key(pem: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The public key of a PEM CSR, checked as `load_csr` checks it (loaded once: loading an EC
    key checks its point, which costs as much as a tenth of a signature)."""
    return _load_csr(pem)[1]


def _load_csr(pem: bytes) -> tuple[x509.CertificateSigningRequest, _PublicKey]:
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError:
        raise ValueError("csr is not a PEM certificate signing request") from None
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("csr public key cannot be read") from None
    accepted = _accepted_key(key, "csr")
    if not csr.is_signature_valid:
        raise ValueError("csr signature does not verify")
    return csr, accepted


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """Parse a PEM ``PUBLIC KEY`` (a PKIX SubjectPublicKeyInfo) and check its type.

    Raises:
        ValueError: if it does not parse, or the key is not of a type `load_csr` accepts.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("public_key is not a PEM public key") from None
    return _accepted_key(key, "public_key")


def _accepted_key(key: object, what: str) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _ACCEPTED_CURVES):
            raise ValueError(
                f"{what} key curve {key.curve.name} is not supported (use P-256 or P-384)"
            )
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size not in _ACCEPTED_RSA_BITS:
            raise ValueError(
                f"{what} RSA key of {key.key_size} bits is not supported (use 2048, 3072 or 4096)"
            )
    else:
        raise ValueError(
            f"{what} key type {type(key).__name__} is not supported (use ECDSA or RSA)"
        )
    return key


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER certificate, lower-case hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def public_key_sha256(public_key: PublicKeyTypes) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, lower-case hex (``openssl pkey -pubout``): how
    the revocation list and the audit trail name a key."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def renewal_due(
    cert: x509.Certificate,
    *,
    now: datetime.datetime | None = None,
    at: float = durations.RENEW_FRACTION,
) -> bool:
    """Whether ``at`` (a fraction) of the certificate's lifetime has passed at ``now``."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return (now or _utcnow()) >= start + (end - start) * at


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: _PublicKey,
    now: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(now - durations.BACKDATE)
        .not_valid_after(not_after)
    )


def _serial() -> int:
    while True:
        serial = secrets.randbits(_SERIAL_BITS)
        if serial >= 1 << 64:  # at least 64 bits of entropy show in every serial
            return serial


def _ca_name(organization: str, role: str, key: _PublicKey) -> x509.Name:
    # Each generation's subject differs, so chains to an old and a new root never get confused.
    tag = _ski(key).digest.hex()[:8]
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} {role} {tag}"),
        ]
    )


def _ski(key: _PublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:  # an organisation's certificate may lack one
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage(key: _PublicKey) -> x509.KeyUsage:
    # RSA keys may also carry TLS 1.2 RSA key transport; ECDSA keys only sign (RFC 5480 3).
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(name: str) -> x509.GeneralName:
    if name_rules.is_ip_address(name):
        return x509.IPAddress(ipaddress.ip_address(name))
    return x509.DNSName(name)


def _key_pem(key: _PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """Parse an unencrypted PEM private key of a type the CA signs with.

    Raises:
        ValueError: if it does not parse or is neither ECDSA nor RSA.
    """
    return _load_key(pem)


def _load_key(pem: bytes) -> _PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, _PrivateKey):
        raise ValueError(f"CA key type {type(key).__name__} is not supported")
    return key


def _key_type_of(key: object) -> KeyType:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return KeyType.ECDSA_P256
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"CA key type {type(key).__name__} is not supported")
    return KeyType.RSA_3072 if key.key_size >= 3072 else KeyType.RSA_2048
