"""`mtls_context.grpc_peer`: the peer of a gRPC call decoded as ``getpeercert()`` gives it, so
the identity and the allow-list are the HTTP adapters' (the real server: test_grpc.py)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mtls_context.grpc_peer import peer_cert, peer_identity, require_peer
from mtls_context.identity import serial

SPIFFE = "spiffe://cluster.local/ns/shop/sa/web"


def pem(*sans: x509.GeneralName, common_name: str = "leaf") -> tuple[bytes, int]:
    """A self-signed certificate with these names, and its serial number."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), cert.serial_number


class Aborted(Exception):
    pass


class Context:
    """What a gRPC servicer context gives the adapter: auth_context() and abort()."""

    def __init__(self, pems: Sequence[bytes]) -> None:
        self._auth = {"x509_pem_cert": list(pems)} if pems else {}
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise Aborted


def say(request: bytes, context: grpc.ServicerContext) -> bytes:
    return f"Hello, {peer_identity(context)}!".encode()


def call(context: Context, allow: Sequence[str] = ()) -> bytes | None:
    try:
        return require_peer(say, allow)(b"", context)  # type: ignore[arg-type]
    except Aborted:
        return None


def test_the_first_dns_name_then_the_spiffe_id_then_the_common_name() -> None:
    both, _ = pem(x509.DNSName("web.shop.svc"), x509.UniformResourceIdentifier(SPIFFE))
    spiffe_only, _ = pem(x509.UniformResourceIdentifier(SPIFFE))
    no_san, _ = pem(common_name="legacy")
    assert peer_identity(Context([both])) == "web.shop.svc"  # type: ignore[arg-type]
    assert peer_identity(Context([spiffe_only])) == SPIFFE  # type: ignore[arg-type]
    assert peer_identity(Context([no_san])) == "legacy"  # type: ignore[arg-type]


def test_the_serial_is_the_certificates() -> None:
    text, number = pem(x509.DNSName("web.shop.svc"))
    cert = peer_cert(Context([text]))  # type: ignore[arg-type]
    assert cert is not None
    assert serial(cert) == format(number, "x")
    assert cert["subjectAltName"] == (("DNS", "web.shop.svc"),)


@pytest.mark.parametrize("allowed", ["web.shop.svc", SPIFFE])
def test_an_allowed_dns_name_or_spiffe_id_gets_through(allowed: str) -> None:
    text, _ = pem(x509.DNSName("web.shop.svc"), x509.UniformResourceIdentifier(SPIFFE))
    assert call(Context([text]), [allowed]) == b"Hello, web.shop.svc!"


def test_a_client_off_the_allow_list_is_denied_with_one_line() -> None:
    text, _ = pem(x509.DNSName("db.shop.svc"))
    context = Context([text])
    assert call(context, ["web.shop.svc"]) is None
    assert context.aborted == (
        grpc.StatusCode.PERMISSION_DENIED,
        "db.shop.svc is not on this server's allow-list",
    )


def test_a_uri_is_not_taken_for_a_dns_name() -> None:
    # auth_context() lists both kinds of name alike; the decoded certificate keeps them apart.
    text, _ = pem(x509.UniformResourceIdentifier("https://web.shop.svc"))
    context = Context([text])
    assert call(context, ["https://web.shop.svc"]) is None


def test_no_certificate_is_unauthenticated() -> None:
    context = Context([])
    assert peer_cert(context) is None  # type: ignore[arg-type]
    assert call(context) is None
    assert context.aborted == (grpc.StatusCode.UNAUTHENTICATED, "no verified client certificate")
