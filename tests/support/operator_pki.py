"""Secret data made with trustme, independent of the code under test."""

from __future__ import annotations

import datetime

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from mtls_context import CA, CERT, KEY, POLICY
from mtls_operator.certs import sha256_hex
from mtls_operator.tlssecret import CAView, policy_bytes

POLICY_DOC = {"profile": "intermediate", "min_version": "TLSv1.2", "ciphers": "ECDHE+AESGCM"}


class PKI:
    """A root, an intermediate under it, and Secret data for leaves it issues."""

    def __init__(self) -> None:
        self.root = trustme.CA()
        self.intermediate = self.root.create_child_ca()

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

    def data(self, *names: str, valid_for: datetime.timedelta | None = None) -> dict[str, bytes]:
        now = datetime.datetime.now(datetime.UTC)
        leaf = self.intermediate.issue_cert(
            *(names or ("web.shop",)),
            not_before=None if valid_for is None else now,
            not_after=None if valid_for is None else now + valid_for,
        )
        return {
            CERT: b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
            KEY: leaf.private_key_pem.bytes(),
            CA: self.root.cert_pem.bytes(),
            POLICY: policy_bytes(POLICY_DOC),
        }
