"""Chaining the CA to an organisation's own root, in one of two modes.

The modes are `mtls_ca.state.UPSTREAM_MODES`.

**Offline root** (``offline``): the CA makes a key and a CSR for its signing CA
(`write_csr`); the organisation signs it wherever its root lives; `imported` checks what comes
back and the CA signs under it. The key never leaves the state directory. Renewal is the same two
steps: the new signing CA becomes the ``upcoming`` one (its CRL is published at once) while the
old one still signs, and takes over at the first upkeep round when both the old one is at 2/3 of
its life and `mtls_ca.revocation.CRL_LEAD` has passed since the import (at once when the old
one has expired).

**Root on a volume** (``volume``): the organisation's root, or a CA certificate under it, and its
key are given to the root holder alone (`given`); the CA makes and renews its own signing
intermediates under it like under its own root.

In both modes a signing CA under another root than the one trusted now starts a root rotation
(`adopt`): both roots are trusted until the rotation completes, and the SPIFFE bundle's sequence
moves.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from mtls_contract import identities
from mtls_contract.phases import Phase

from . import revocation
from .authority import CA, KeyType, fingerprint, load_private_key
from .name_constraints import Constraints
from .state import State

__all__ = [
    "AWAITING_IMPORT",
    "PENDING",
    "adopt",
    "awaiting_status",
    "drop_pending",
    "given",
    "imported",
    "is_new",
    "pending",
    "write_csr",
]

PENDING = "upstream-pending.json"
"""The file in the state directory that holds the key of a CSR written and not yet imported."""
AWAITING_IMPORT = "awaiting-import"
"""The phase ``hello-mtls-ca status`` shows before the first import (no state yet)."""


def write_csr(directory: Path, key_type: KeyType, settings: dict[str, str]) -> bytes:
    """Make a key for a signing CA, keep it in ``directory`` (mode 0600) with ``settings`` (the
    state's, for an import that creates the state) and return its CSR, PEM.

    A second call replaces the waiting key: only the last CSR written can be imported.
    """
    key = key_type._generate()
    tag = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest.hex()[:8]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hello-mtls"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"hello-mtls signing CA {tag}"),
                ]
            )
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    document = {"key": pem.decode(), "settings": settings}
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = directory / f".{PENDING}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, directory / PENDING)
    return csr.public_bytes(serialization.Encoding.PEM)


def pending(directory: Path) -> tuple[bytes, dict[str, str]]:
    """The waiting key (PEM) and settings `write_csr` kept.

    Raises:
        ValueError: if no CSR is waiting.
    """
    try:
        document = json.loads((directory / PENDING).read_text())
    except FileNotFoundError:
        raise ValueError(
            f"no CSR is waiting for its certificate in {directory} "
            f"(run: hello-mtls-ca init --state {directory} --upstream-csr FILE)"
        ) from None
    return document["key"].encode(), dict(document["settings"])


def awaiting_status(directory: Path) -> dict[str, Any]:
    """What ``hello-mtls-ca status`` says of ``directory`` while its first CSR awaits its
    certificate (the CA serves nothing yet, and its signers wait for it)."""
    return {
        "phase": AWAITING_IMPORT,
        "upstream": "offline",
        "chain": [],
        "warnings": [
            "no CA yet: the CA serves nothing until the certificate the organisation signs for "
            f"the CSR in {directory} (upstream.csr, or the file init --upstream-csr wrote) is "
            f"imported (hello-mtls-ca import --state {directory} CERT --chain CHAIN)"
        ],
    }


def drop_pending(directory: Path) -> None:
    """Forget the waiting key once its certificate is imported (the state holds it now)."""
    (directory / PENDING).unlink(missing_ok=True)


def imported(
    cert_pem: bytes,
    chain_pem: bytes,
    key_pem: bytes,
    *,
    trust_domain: str,
    now: datetime.datetime | None = None,
) -> CA:
    """The CA that signs under a signing CA the organisation signed (offline mode).

    Args:
        cert_pem: the signed certificate of the CSR `write_csr` made.
        chain_pem: the organisation's certificates above it, up to and including its root
            (in any order; the certificate file may carry them too).
        key_pem: the CSR's key (`pending`).
        trust_domain: of the SPIFFE IDs the CA will sign; the name constraints must allow them.
        now: the time to check validity at.

    Raises:
        ValueError: saying in words which check failed.
    """
    certificates = _load(cert_pem, "the certificate") + (
        _load(chain_pem, "the chain") if chain_pem else []
    )
    signing = certificates[0]
    path = _path(signing, certificates[1:])
    key = _key(key_pem)
    if _spki(signing.public_key()) != _spki(key.public_key()):
        raise ValueError(
            "the certificate is not for the key of the CSR this CA wrote (its public key differs; "
            "was it signed from another CSR, or was init --upstream-csr run again since?)"
        )
    _check(path, below=0, trust_domain=trust_domain, now=now or _utcnow())
    return CA(
        root=path[-1],
        root_key=None,
        intermediate=signing,
        intermediate_key=key,
        chain=tuple(path[1:-1]),
    )


def given(
    cert_pem: bytes,
    key_pem: bytes,
    *,
    key_type: KeyType = KeyType.ECDSA_P256,
    trust_domain: str,
    now: datetime.datetime | None = None,
) -> CA:
    """A CA with a new signing intermediate under the organisation's certificate (volume mode).

    Args:
        cert_pem: the organisation's root, or a CA certificate under it followed by the
            certificates up to and including the root (``tls.crt`` and ``ca.crt`` of its Secret).
        key_pem: the key of the first certificate.
        key_type: of the intermediate made under it.
        trust_domain: of the SPIFFE IDs the CA will sign; the name constraints must allow them.
        now: the time to check validity at.

    Raises:
        ValueError: saying in words which check failed.
    """
    certificates = _load(cert_pem, "the organisation's certificate")
    path = _path(certificates[0], certificates[1:])
    key = _key(key_pem)
    if _spki(path[0].public_key()) != _spki(key.public_key()):
        raise ValueError("the key given is not the key of the organisation's certificate")
    now = now or _utcnow()
    _check(path, below=1, trust_domain=trust_domain, now=now)
    return CA.create_under(path[-1], tuple(path[:-1]), key, key_type=key_type, now=now)


def adopt(state: State, new: CA, *, mode: str, now: datetime.datetime | None = None) -> State:
    """``state`` with ``new`` taken in, its roots now of ``mode``: under the root trusted now,
    ``new`` is the ``upcoming`` signing CA (a renewal); under another root, the new generation
    of a root rotation's first step (both roots trusted, the SPIFFE bundle's sequence moves).

    Raises:
        ValueError: if a root rotation is under way already.
    """
    now = now or _utcnow()
    if fingerprint(new.root) == fingerprint(state.signer.root):
        held = replace(state, upcoming=new, upcoming_since=now, upstream=mode)
        return revocation.with_crl(held, now=now)
    if state.phase != Phase.IDLE:
        raise ValueError(
            f"a root rotation is under way (phase '{state.phase}'): finish it with "
            "hello-mtls-ca rotate-root before taking a CA under another root"
        )
    return replace(state, upstream=mode).rotated(expected=Phase.IDLE, new_ca=lambda: new)


def is_new(state: State, given: CA) -> bool:
    """Whether the organisation's certificate ``given`` was made under is none that a trusted
    generation (during a root rotation, the new one too) or the successor was made under."""
    known = [*state.generations, *([state.upcoming] if state.upcoming is not None else [])]
    return all(fingerprint(given.issuer) != fingerprint(ca.issuer) for ca in known)


def _load(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ValueError(f"{what} is not PEM certificates") from None
    return certificates


def _key(pem: bytes) -> Any:
    try:
        return load_private_key(pem)
    except (ValueError, TypeError) as e:
        raise ValueError(f"the key is not a PEM private key of a supported type: {e}") from None


def _path(first: x509.Certificate, others: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """``first`` and its issuers from ``others``, up to a self-signed root."""
    path = [first]
    pool = [c for c in others if c != first]
    while not _self_signed(path[-1]):
        child = path[-1]
        issuer = next((c for c in pool if _signed_by(child, c)), None)
        if issuer is None:
            raise ValueError(
                f"no certificate given signed '{_name(child)}' (its issuer is "
                f"'{child.issuer.rfc4514_string()}'): give the organisation's chain up to and "
                "including its root"
            )
        pool.remove(issuer)
        path.append(issuer)
    return path


def _check(
    path: Sequence[x509.Certificate], *, below: int, trust_domain: str, now: datetime.datetime
) -> None:
    """Each certificate of ``path`` may sign what is below it at ``now``: CA:TRUE, a path
    length that leaves room for ``below`` CAs under ``path[0]``, keyCertSign, within validity,
    and name constraints that allow the trust domain's SPIFFE IDs."""
    for depth, cert in enumerate(path):
        name = _name(cert)
        try:
            basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            raise ValueError(f"'{name}' is not a CA certificate (no basicConstraints)") from None
        if not basic.ca:
            raise ValueError(f"'{name}' is not a CA certificate (basicConstraints CA:FALSE)")
        under = below + depth
        if basic.path_length is not None and basic.path_length < under:
            raise ValueError(
                f"'{name}' allows {basic.path_length} CA certificate(s) below it (pathlen), "
                f"but this chain puts {under} there"
            )
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.key_cert_sign:
            raise ValueError(f"'{name}' may not sign certificates (keyUsage lacks keyCertSign)")
        if cert.not_valid_before_utc > now:
            raise ValueError(f"'{name}' is not valid before {_rfc3339(cert.not_valid_before_utc)}")
        if cert.not_valid_after_utc <= now:
            raise ValueError(f"'{name}' expired at {_rfc3339(cert.not_valid_after_utc)}")
    constraints = Constraints.of(path)
    if constraints is not None:
        try:
            constraints.check([], [identities.spiffe_id(trust_domain, "ns", "sa")])
        except ValueError as e:
            raise ValueError(
                f"the SPIFFE IDs of trust domain {trust_domain} break the chain's name "
                f"constraints: {e}"
            ) from None


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer and _signed_by(cert, cert)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
