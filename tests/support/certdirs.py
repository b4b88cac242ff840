"""Certificate directories made with trustme: an issuer independent of our own CA code."""

from __future__ import annotations

import datetime
import json
import shutil
import ssl
from collections.abc import Sequence
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mtls_context.layout import CA, CERT, CRL, DATA_LINK, KEY, POLICY, write_version
from mtls_context.tls_policy import PROFILES

INTERMEDIATE = PROFILES["intermediate"].document()
MODERN = PROFILES["modern"].document()


class Issuer:
    """A root and an intermediate, like the hello-mtls CA; leaves are signed by the intermediate."""

    def __init__(self, key_type: trustme.KeyType = trustme.KeyType.ECDSA) -> None:
        self.root = trustme.CA(key_type=key_type)
        self.intermediate = self.root.create_child_ca(key_type=key_type)

    @property
    def root_pem(self) -> bytes:
        return self.root.cert_pem.bytes()

    def issue(
        self,
        *names: str,
        expired: bool = False,
        key_type: trustme.KeyType = trustme.KeyType.ECDSA,
    ) -> trustme.LeafCert:
        not_before = not_after = None
        if expired:
            now = datetime.datetime.now(datetime.UTC)
            not_before, not_after = (
                now - datetime.timedelta(days=2),
                now - datetime.timedelta(days=1),
            )
        return self.intermediate.issue_cert(
            *names,
            common_name=names[0],
            key_type=key_type,
            not_before=not_before,
            not_after=not_after,
        )


def files(
    leaf: trustme.LeafCert, trusted: Sequence[Issuer], policy: dict[str, str] | None = None
) -> dict[str, bytes]:
    """The Secret files for ``leaf``, trusting the roots of ``trusted``."""
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    result = {
        CERT: chain,
        KEY: leaf.private_key_pem.bytes(),
        CA: b"".join(issuer.root_pem for issuer in trusted),
    }
    if policy is not None:
        result[POLICY] = json.dumps(policy).encode()
    return result


def publish(
    directory: Path,
    leaf: trustme.LeafCert,
    trusted: Sequence[Issuer],
    policy: dict[str, str] = INTERMEDIATE,
    crl: bytes | None = None,
) -> Path:
    """Write a new kubelet-style version of ``directory`` (with ``ca.crl`` if ``crl``)."""
    written = files(leaf, trusted, policy)
    if crl is not None:
        written[CRL] = crl
    return write_version(directory, written)


def crl(
    issuer: Issuer,
    revoked: Sequence[trustme.LeafCert] = (),
    *,
    valid_for: datetime.timedelta = datetime.timedelta(days=7),
    age: datetime.timedelta = datetime.timedelta(minutes=5),
) -> bytes:
    """A PEM CRL of ``issuer``'s intermediate listing ``revoked``, issued ``age`` ago and valid
    for ``valid_for`` from then (made with cryptography, not with our CA)."""
    key = serialization.load_pem_private_key(issuer.intermediate.private_key_pem.bytes(), None)
    cert = x509.load_pem_x509_certificate(issuer.intermediate.cert_pem.bytes())
    this_update = datetime.datetime.now(datetime.UTC) - age
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(this_update)
        .next_update(this_update + valid_for)
    )
    for leaf in revoked:
        serial = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(this_update)
        builder = builder.add_revoked_certificate(entry.build())
    signed = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return signed.public_bytes(serialization.Encoding.PEM)


def write_like_kubelet(directory: Path, files: dict[str, bytes]) -> Path:
    """Publish a version and delete the previous one at once, as the kubelet's atomic writer does
    (`write_version` keeps it a while): a reader that pinned it finds its files gone."""
    version = write_version(directory, files)
    for old in directory.iterdir():
        if old.name.startswith("..") and old.name != DATA_LINK and old.name != version.name:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
    return version


def serial_of(leaf: trustme.LeafCert) -> str:
    """The leaf's serial as lowercase hex, read with cryptography (independent of ``ssl``)."""
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    return format(cert.serial_number, "x")


def plain_client(issuer: Issuer, leaf: trustme.LeafCert | None) -> ssl.SSLContext:
    """A stdlib client context, built without our library: trusts ``issuer``'s root and
    presents ``leaf`` (None: no certificate). What tests probe our servers with."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    issuer.root.configure_trust(context)
    if leaf is not None:
        leaf.configure_cert(context)
    return context


class Clock:
    """A monotonic clock a test moves by hand (``clock.now += 1``), for `ReloadingContext`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def connect(
    server: ssl.SSLContext,
    client: ssl.SSLContext,
    name: str,
    session: ssl.SSLSession | None = None,
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A handshake in memory and one message; the server and client ends. Raises the first
    side's SSLError."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = server.wrap_bio(to_server, to_client, server_side=True)
    c = client.wrap_bio(to_client, to_server, server_hostname=name, session=session)
    for _ in range(5):
        for end in (c, s):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
    c.write(b"ping")
    assert s.read(4) == b"ping"
    return s, c
