"""Secret data made with trustme and cryptography, independent of the code under test."""

from __future__ import annotations

import datetime

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mtls_ca.tls_profiles import policy_bytes
from mtls_context.layout import CA, CERT, KEY, POLICY
from mtls_operator.ca_view import CAView
from mtls_operator.certs import sha256_hex

SPIFFE_ID = "spiffe://cluster.local/ns/shop/sa/web"
POLICY_DOC = {"profile": "intermediate", "min_version": "TLSv1.2", "ciphers": "ECDHE+AESGCM"}


class PKI:
    """A root, an intermediate under it, and Secret data for leaves it issues."""

    def __init__(self, key_type: trustme.KeyType = trustme.KeyType.ECDSA) -> None:
        self.root = trustme.CA(key_type=key_type)
        self.intermediate = self.root.create_child_ca(key_type=key_type)

    @property
    def view(self) -> CAView:
        bundle = self.root.cert_pem.bytes()
        return CAView(
            intermediate_sha256=self.fingerprint(self.intermediate),
            bundle_pem=bundle,
            bundle_sha256=sha256_hex(bundle),
            tls_policy=POLICY_DOC,
        )

    @staticmethod
    def fingerprint(ca: trustme.CA) -> str:
        cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
        return cert.fingerprint(hashes.SHA256()).hex()

    def data(
        self,
        *names: str,
        valid_for: datetime.timedelta | None = None,
        uris: tuple[str, ...] = (SPIFFE_ID,),
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
        extension: x509.ExtensionType | None = None,
    ) -> dict[str, bytes]:
        """A leaf for ``names`` (default ``web.shop``) with the SPIFFE ID of ``shop``'s ``web``,
        for ``key`` (default: a new P-256 key); ``extension`` replaces its SAN extension."""
        now = datetime.datetime.now(datetime.UTC)
        issuer = x509.load_pem_x509_certificate(self.intermediate.cert_pem.bytes())
        issuer_key = serialization.load_pem_private_key(
            self.intermediate.private_key_pem.bytes(), password=None
        )
        assert isinstance(issuer_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        key = key or ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names or ("web.shop",)]
        sans += [x509.UniformResourceIdentifier(uri) for uri in uris]
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1) if valid_for is None else now)
            .not_valid_after(now + (valid_for or datetime.timedelta(days=1)))
            .add_extension(extension or x509.SubjectAlternativeName(sans), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )
        chain = leaf.public_bytes(serialization.Encoding.PEM) + self.intermediate.cert_pem.bytes()
        return {
            CERT: chain,
            KEY: key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            CA: self.root.cert_pem.bytes(),
            POLICY: policy_bytes(POLICY_DOC),
        }
