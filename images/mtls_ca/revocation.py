"""Revocation: the index of issued certificates, the revocation list, and the signed CRLs.

The root holder records every certificate it signs in `IssuedIndex` (``DIR/issued.jsonl`` beside
the state: serial, names, SPIFFE ID, public-key fingerprint, issuer, not-after; one JSON line
each, appended under the state's lock, entries dropped once expired). ``hello-mtls-ca revoke``
and ``POST /revoke`` pick certificates from it by serial, by identity (a DNS name, IP address or
SPIFFE ID: every certificate that carries it) or by namespace, and `revoke` adds them to the
state's revocation list (`mtls_ca.state.State.revoked`), which travels with the state, so signer
pods refuse a revoked key too and serve the same CRL.

The CRLs are RFC 5280 v2, one per intermediate still valid (during a root rotation the old
generation's too), with a CRL number and an authority key identifier; their nextUpdate is
`CRL_VALIDITY` ahead and the root holder signs them again when less than
`CRL_VALIDITY` - `CRL_REFRESH` is left, or at once on a revocation or a new intermediate. A week
of validity re-signed daily lets a CA that is down for days leave every server with a CRL that is
still valid (`mtls_context` drops one near its nextUpdate rather than refuse traffic).

Signer pods report what they sign to the root holder in batches (`mtls_ca.signer_reports`,
``POST /issued``), which writes the records into the same index. A certificate signed before the
index existed, or one whose report never arrived (a signer that died with its queue, or whose
queue overflowed while the root holder was away), is not found by serial, identity or namespace:
revoke it with its PEM (``--cert``).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mtls_context.layout import fsync_directory
from mtls_contract import durations, identities

from .authority import CA, Issued, fingerprint, public_key_sha256
from .durability import GroupFlush

if TYPE_CHECKING:
    from .audit import AuditLog
    from .state import State

__all__ = [
    "CRL_LEAD",
    "CRL_REFRESH",
    "CRL_VALIDITY",
    "REASONS",
    "IssuedIndex",
    "IssuedRecord",
    "Revocation",
    "announce",
    "check_key",
    "crl_due",
    "listed_issuers",
    "load_crls",
    "record_for",
    "revoke",
    "select",
    "with_crl",
]

CRL_VALIDITY = datetime.timedelta(days=7)
"""nextUpdate - thisUpdate of every CRL."""
CRL_REFRESH = datetime.timedelta(days=1)
"""How often the root holder signs the CRLs again when nothing changed."""
CRL_LEAD = datetime.timedelta(days=1)
"""How long a new intermediate's CRL is published before the intermediate signs."""
REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}
"""The RFC 5280 reason codes a leaf may be revoked for (certificateHold is not offered: a
revocation here is final; the CA reasons do not apply to leaves)."""

_log = logging.getLogger("mtls_ca")
_RECORD_FIELDS = {"serial", "names", "spiffe_id", "key_sha256", "issuer", "not_after"}
_SERIAL = re.compile(r"0*[1-9a-f][0-9a-f]{0,39}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


@dataclass(frozen=True)
class IssuedRecord:
    """What the CA remembers of a certificate it signed, until the certificate expires."""

    serial: int
    names: tuple[str, ...]
    spiffe_id: str | None
    key_sha256: str
    """`public_key_sha256` of its public key."""
    issuer: str
    """SHA-256 fingerprint of the intermediate that signed it."""
    not_after: datetime.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": f"{self.serial:x}",
            "names": list(self.names),
            "spiffe_id": self.spiffe_id,
            "key_sha256": self.key_sha256,
            "issuer": self.issuer,
            "not_after": _rfc3339(self.not_after),
        }

    @cached_property
    def line(self) -> bytes:
        """`to_json` as compact JSON and a newline: a line of the index, an item of a signer's
        report. Made once: a signer's record is measured for its batch and then sent, a root
        holder's written."""
        return json.dumps(self.to_json(), separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_json(cls, document: Any) -> IssuedRecord:
        """Load what `to_json` wrote (a line of the index, or a signer's report).

        Raises:
            ValueError: naming the first field that is missing or not of its form.
        """
        if not isinstance(document, dict):
            raise ValueError("a record must be a JSON object")
        unknown = sorted(set(document) - _RECORD_FIELDS)
        missing = sorted(_RECORD_FIELDS - set(document))
        if unknown or missing:
            raise ValueError(f"a record has the fields {', '.join(sorted(_RECORD_FIELDS))}")
        serial, names, spiffe_id = document["serial"], document["names"], document["spiffe_id"]
        if not isinstance(serial, str) or not _SERIAL.fullmatch(serial):
            raise ValueError("'serial' must be a positive hex number of at most 40 digits")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("'names' must be a list of strings")
        if spiffe_id is not None and not isinstance(spiffe_id, str):
            raise ValueError("'spiffe_id' must be a string or null")
        for key in ("key_sha256", "issuer"):
            if not isinstance(document[key], str) or not _SHA256.fullmatch(document[key]):
                raise ValueError(f"'{key}' must be a SHA-256 in lowercase hex")
        if not isinstance(document["not_after"], str):
            raise ValueError("'not_after' must be a time like 2026-12-07T12:00:00Z")
        try:
            not_after = _parse_time(document["not_after"])
        except ValueError:
            raise ValueError("'not_after' must be a time like 2026-12-07T12:00:00Z") from None
        return cls(
            serial=int(serial, 16),
            names=tuple(names),
            spiffe_id=spiffe_id,
            key_sha256=document["key_sha256"],
            issuer=document["issuer"],
            not_after=not_after,
        )


@dataclass(frozen=True)
class Revocation:
    """One entry of the revocation list."""

    serial: int
    reason: str
    """A key of `REASONS`."""
    revoked_at: datetime.datetime
    issuer: str
    """SHA-256 fingerprint of the intermediate that signed the certificate: whose CRL lists it."""
    not_after: datetime.datetime
    """When the certificate expires; the entry is dropped after that (RFC 5280 3.3)."""
    key_sha256: str
    """The certificate's public key: the CA signs it no more."""
    identity: str = ""
    """Its first name or SPIFFE ID, for people reading the list."""

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": f"{self.serial:x}",
            "reason": self.reason,
            "revoked_at": _rfc3339(self.revoked_at),
            "issuer": self.issuer,
            "not_after": _rfc3339(self.not_after),
            "key_sha256": self.key_sha256,
            "identity": self.identity,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Revocation:
        return cls(
            serial=int(document["serial"], 16),
            reason=_reason(document["reason"]),
            revoked_at=_parse_time(document["revoked_at"]),
            issuer=document["issuer"],
            not_after=_parse_time(document["not_after"]),
            key_sha256=document["key_sha256"],
            identity=document.get("identity", ""),
        )


class IssuedIndex:
    """``DIR/issued.jsonl``: one `IssuedRecord` a line, appended by the root holder.

    Appends and `prune` serialise on ``DIR/.issued.lock`` (a prune renames the file, and an
    append to the old one would be lost); a line torn by a crash is skipped on reading and
    dropped at the next `prune`, and the next append starts on a line of its own. An append is on
    disk when it returns; the threads of a process share the flushes (`mtls_ca.durability`).
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "issued.jsonl"
        self._lock = directory / ".issued.lock"
        self._flush = GroupFlush()
        self._pid = 0
        self._appended = 0  # this process's appends, the flushes' tickets
        self._file: tuple[int, int] | None = None  # (device, inode) of the last one's file
        self._lock_fd: int | None = None  # this process's, with `_threads` for its threads
        self._threads = threading.Lock()
        this = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forked(this()))

    def append(self, record: IssuedRecord) -> None:
        self.extend([record])

    def extend(self, records: Sequence[IssuedRecord]) -> None:
        """Append ``records``, on disk when this returns (one write and one flush for all)."""
        self.write(records)()

    def write(self, records: Sequence[IssuedRecord]) -> Callable[[], None]:
        """Append ``records``; returns what to call, once, to wait until they are on disk
        (`POST /sign` writes its audit record meanwhile, and both flushes go on at once).

        Raises:
            OSError: from the call, if the flush failed: the records may not be durable.
        """
        data = b"".join(r.line for r in records)
        if not data:
            return lambda: None
        with self._locked():
            if self._pid != os.getpid():  # a forked worker flushes its own appends
                self._pid, self._flush, self._appended, self._file = (
                    os.getpid(),
                    GroupFlush(),
                    0,
                    None,
                )
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                file = os.fstat(fd)
                if (file.st_dev, file.st_ino) != self._file:
                    # A prune (of any process) rewrote the index, with every line appended
                    # before, and synced it: those are durable, and a flush of the file they
                    # went to would not cover this one.
                    self._flush.switched()
                    self._file = (file.st_dev, file.st_ino)
                if file.st_size and os.pread(fd, 1, file.st_size - 1) != b"\n":
                    data = b"\n" + data  # after a line torn by a crash
                os.write(fd, data)
                self._appended += 1
                ticket = self._appended
                self._flush.wrote(ticket)
            except BaseException:
                os.close(fd)
                raise
        flush = self._flush

        def durable() -> None:
            try:
                flush.wait(ticket, fd)
            finally:
                os.close(fd)

        return durable

    def records(self, now: datetime.datetime | None = None) -> list[IssuedRecord]:
        """Every certificate recorded that has not expired at ``now``, once each (a signer
        sends a batch again when the answer to it was lost)."""
        now = now or _utcnow()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        found: dict[tuple[str, int], IssuedRecord] = {}
        for line in data.splitlines():
            try:
                record = IssuedRecord.from_json(json.loads(line))
            except ValueError:
                continue  # torn by a crash mid-append
            if record.not_after > now:
                found.setdefault((record.issuer, record.serial), record)
        return list(found.values())

    def prune(self, now: datetime.datetime | None = None) -> int:
        """Rewrite the index without expired entries (atomically); return how many are left."""
        with self._locked():
            kept = self.records(now)
            tmp = self.path.with_name(f".issued.jsonl.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(b"".join(r.line for r in kept))
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self.path)
            fsync_directory(self.path.parent)  # the rename too, or the old file comes back
        return len(kept)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The lock between processes (a ``flock`` of a descriptor of this process's) and
        between this process's threads (a ``flock`` held through one descriptor does not keep
        out another thread that uses the same one)."""
        with self._threads:
            if self._lock_fd is None:
                self._lock_fd = os.open(self._lock, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)


def _forked(index: IssuedIndex | None) -> None:
    """In a forked child (a gunicorn worker): the index's lock is the child's own. A descriptor
    shared with the parent or a sibling would share their ``flock``, and a thread of the parent
    may have held `IssuedIndex._threads` at the fork, where no thread of the child releases it."""
    if index is not None:
        if index._lock_fd is not None:
            os.close(index._lock_fd)
        index._lock_fd, index._threads = None, threading.Lock()


def record_of(issued: Issued, signer: CA) -> IssuedRecord:
    """The index entry of ``issued``, just signed by ``signer``'s intermediate (what
    `record_for` reads from the certificate, kept from signing it)."""
    return IssuedRecord(
        serial=issued.serial,
        names=issued.names,
        spiffe_id=issued.spiffe_id,
        key_sha256=issued.public_key_sha256,
        issuer=signer.intermediate_sha256,
        not_after=issued.not_after,
    )


def record_for(cert: x509.Certificate, issuer: x509.Certificate) -> IssuedRecord:
    """The index entry of ``cert``, signed by the intermediate ``issuer``."""
    names: list[str] = []
    uris: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
        uris = list(san.get_values_for_type(x509.UniformResourceIdentifier))
    return IssuedRecord(
        serial=cert.serial_number,
        names=tuple(names),
        spiffe_id=next((u for u in uris if u.startswith("spiffe://")), None),
        key_sha256=public_key_sha256(cert.public_key()),
        issuer=fingerprint(issuer),
        not_after=cert.not_valid_after_utc,
    )


def select(
    records: Iterable[IssuedRecord],
    *,
    serial: int | None = None,
    identity: str | None = None,
    namespace: str | None = None,
) -> list[IssuedRecord]:
    """The records a revocation by ``serial``, ``identity`` or ``namespace`` (exactly one) means.

    Raises:
        ValueError: if not exactly one is given.
    """
    if sum(x is not None for x in (serial, identity, namespace)) != 1:
        raise ValueError("give exactly one of serial, identity and namespace")
    if serial is not None:
        return [r for r in records if r.serial == serial]
    if identity is not None:
        wanted = identity.lower() if not identity.startswith("spiffe://") else identity
        return [
            r for r in records if r.spiffe_id == identity or wanted in (n.lower() for n in r.names)
        ]
    assert namespace is not None
    identities.spiffe_id("x.local", namespace, "x")  # a namespace must be a valid label
    marker = f"/ns/{namespace}/sa/"
    return [r for r in records if r.spiffe_id is not None and marker in r.spiffe_id]


def revoke(
    state: State,
    records: Sequence[IssuedRecord],
    reason: str,
    *,
    now: datetime.datetime | None = None,
) -> State:
    """``state`` with ``records`` on its revocation list and CRLs signed again.

    Raises:
        ValueError: if ``reason`` is not one of `REASONS`, or the state cannot sign the CRLs.
    """
    reason = _reason(reason)
    now = now or _utcnow()
    listed = {r.serial for r in state.revoked}
    added = tuple(
        Revocation(
            serial=r.serial,
            reason=reason,
            revoked_at=now,
            issuer=r.issuer,
            not_after=r.not_after,
            key_sha256=r.key_sha256,
            identity=r.spiffe_id or (r.names[0] if r.names else ""),
        )
        for r in records
        if r.serial not in listed
    )
    return with_crl(replace(state, revoked=state.revoked + added), now=now)


def announce(revocations: Sequence[Revocation], *, by: str, trail: AuditLog | None) -> None:
    """Say that ``revocations`` were made by ``by`` (a credential identity, or who ran the
    CLI): a log line each, and a record each in the audit ``trail`` (None: none kept).

    Every revocation passes here once, after it is stored: the one place to record it.
    """
    for r in revocations:
        _log.warning(
            "revoked serial %x (%s, %s) by %s", r.serial, r.identity or "no name", r.reason, by
        )
        if trail is not None:
            trail.record(
                "revocation",
                by,
                serial=f"{r.serial:x}",
                reason=r.reason,
                identity=r.identity,
                issuer=r.issuer,
                public_key_sha256=r.key_sha256,
            )


def check_key(state: State, key_sha256: str) -> None:
    """Refuse a public key (its `mtls_ca.authority.public_key_sha256`) the CA revoked a
    certificate of.

    Raises:
        ValueError: saying which certificate was revoked and what to do.
    """
    for r in state.revoked:
        if r.key_sha256 == key_sha256:
            raise ValueError(
                f"this public key's certificate (serial {r.serial:x}) was revoked ({r.reason}); "
                "generate a new key"
            )


def crl_due(state: State, now: datetime.datetime | None = None) -> bool:
    """Whether the root holder should sign the CRLs again: none yet, one older than
    `CRL_REFRESH`, or the set of valid intermediates changed."""
    now = now or _utcnow()
    try:
        crls = load_crls(state.crl_pem)
    except ValueError:
        return True
    if not crls:
        return True
    issuers = {crl.issuer for crl in crls}
    if issuers != {ca.intermediate.subject for ca in _crl_issuers(state, now)}:
        return True
    return any(
        crl.next_update_utc is None or crl.next_update_utc - now < CRL_VALIDITY - CRL_REFRESH
        for crl in crls
    )


def with_crl(state: State, *, now: datetime.datetime | None = None) -> State:
    """``state`` with expired entries dropped and its CRLs signed anew (the next CRL number).

    Raises:
        ValueError: if the state does not hold the keys of the valid intermediates (a signer's
            copy: the root holder signs CRLs).
    """
    now = now or _utcnow()
    revoked = tuple(r for r in state.revoked if r.not_after > now)
    state = replace(state, retired=tuple(_still_needed(state, now)))
    number = state.crl_number + 1
    pems = []
    for ca in _crl_issuers(state, now):
        if ca.intermediate_key is None:
            raise ValueError("this CA does not hold the intermediates' keys: the root holder signs")
        issuer = fingerprint(ca.intermediate)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.intermediate.subject)
            .last_update(now - durations.BACKDATE)
            .next_update(now + CRL_VALIDITY)
            .add_extension(ca.signed_aki, critical=False)
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        for r in revoked:
            if r.issuer != issuer:
                continue
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(r.serial)
                .revocation_date(r.revoked_at)
            )
            if r.reason != "unspecified":  # RFC 5280 5.3.1: absent rather than unspecified
                entry = entry.add_extension(x509.CRLReason(REASONS[r.reason]), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        crl = builder.sign(ca.intermediate_key, hashes.SHA256())
        pems.append(crl.public_bytes(serialization.Encoding.PEM))
    return replace(state, revoked=revoked, crl_number=number, crl_pem=b"".join(pems))


def listed_issuers(state: State, now: datetime.datetime | None = None) -> set[str]:
    """The fingerprints of the intermediates the CA signs CRLs for: a certificate of another
    issuer is on no CRL, so a record of one is worth nothing."""
    return {fingerprint(ca.intermediate) for ca in _crl_issuers(state, now or _utcnow())}


def load_crls(pem: bytes) -> list[x509.CertificateRevocationList]:
    """Every CRL of a PEM file of concatenated CRLs (as ``GET /crl`` serves).

    Raises:
        ValueError: if a block does not parse.
    """
    end = b"-----END X509 CRL-----"
    return [
        x509.load_pem_x509_crl(block.strip() + end) for block in pem.split(end) if block.strip()
    ]


def _crl_issuers(state: State, now: datetime.datetime) -> list[Any]:
    """The intermediates whose leaves may be met: the trusted generations', the upcoming one and
    the retired ones, while valid."""
    cas = [*state.generations, *([state.upcoming] if state.upcoming else [])]
    valid = [ca for ca in cas if ca.intermediate.not_valid_after_utc > now]
    return valid + _still_needed(state, now)


def _still_needed(state: State, now: datetime.datetime) -> list[Any]:
    """The retired intermediates some leaf of may still be valid: the signer took over at its
    ``not_valid_before`` + `CRL_LEAD` (an imported one when it was handed over), and no leaf
    lives longer than the state's maximum."""
    took_over = state.signer.intermediate.not_valid_before_utc + durations.BACKDATE + CRL_LEAD
    if state.handed_over is not None:
        took_over = max(took_over, state.handed_over)
    if now >= took_over + state.maximum:
        return []
    return [ca for ca in state.retired if ca.intermediate.not_valid_after_utc > now]


def _reason(name: str) -> str:
    if name not in REASONS:
        raise ValueError(f"reason '{name}' is not one of {', '.join(REASONS)}")
    return name


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime.datetime:
    """The moment `_rfc3339` wrote, or ValueError. Not ``strptime``: it reads the locale's
    names on every call and was a fifth of the root holder's CPU in ``POST /issued`` (py-spy
    under bench-ca); a leap second (``:60``) is refused by both."""
    if not _TIME.fullmatch(text):
        raise ValueError(f"'{text}' is not a time like 2026-12-07T12:00:00Z")
    return datetime.datetime.fromisoformat(text)
