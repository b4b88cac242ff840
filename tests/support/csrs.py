"""Certificate signing requests for tests that call the CA's ``POST /sign`` themselves."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def csr_pem(key: ec.EllipticCurvePrivateKey | None = None) -> str:
    """A PEM CSR with an empty subject (the CA takes the names from the request body), signed
    by ``key`` (a new P-256 key when None)."""
    signer = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(signer, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()
