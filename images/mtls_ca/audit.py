"""The CA's audit trail: an append-only, hash-chained, signed log of what the CA did.

Every issuance, refusal, revocation and root-rotation step is one `record`: one line of canonical
JSON (sorted keys, no spaces, ASCII) in ``STATE/audit/NNNNNN.jsonl`` that names the hash (SHA-256
of the line) of the record before it. Every `HEAD_EVERY` records, and within `HEAD_SECONDS` of
an unsigned record (`AuditLog.start`), a ``head`` record signs the hash of the record before it
with the CA's signing intermediate key and carries that intermediate's certificate, so anyone
holding the trust bundle (``ca.crt``) can check it. The latest head is also kept in
``audit/head.json``: a log cut short below it is told apart from one that ends where it should.

Writers in several processes (the service's workers, the CLI) serialise on ``audit/.lock``
(``fcntl``); each picks up the others' records from the file's tail. A record is written with one
``write`` and made durable with ``fdatasync`` before `record` returns (outside the lock, one
flush at a time per process, so concurrent writers share one: `mtls_ca.durability`), and the
caller hands out what it
recorded only after that: a crash can lose a record only of something nobody received, and that
leaves a torn last line, which the next writer moves aside and records (``recovery``). Segments
roll over at `SEGMENT_BYTES`; the chain runs on across them.

`verify` checks a log; `read` yields its records for ``hello-mtls-ca audit show``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mtls_context.layout import fsync_directory

from .authority import CA, Issued, fingerprint
from .durability import GroupFlush
from .state import State

__all__ = [
    "HEAD_EVERY",
    "HEAD_SECONDS",
    "KINDS",
    "SEGMENT_BYTES",
    "AuditLog",
    "Verdict",
    "read",
    "verify",
]

KINDS = ("issuance", "refusal", "revocation", "rotation", "head", "recovery")
HEAD_EVERY = 1000
HEAD_SECONDS = 60.0
SEGMENT_BYTES = 64 * 1024 * 1024
GENESIS = "0" * 64
_FORMAT = 1
_HEAD_CONTEXT = b"hello-mtls audit head v1\n"
_SEGMENT = re.compile(r"^(\d{6})\.jsonl$")
_TEXT_MAX = 512
_CATCH_UP_BYTES = 64 * 1024
"""The most of what other writers appended that a writer reads to find the last record; beyond
that, it reads the end of the segment."""
_log = logging.getLogger("mtls_ca")


class AuditLog:
    """The log in ``directory``; thread- and process-safe.

    Args:
        directory: where the segments live (``STATE/audit``).
        signing: the CA whose intermediate key signs heads now (the state's signer); None: this
            writer writes no heads (another does).
        echo: where each record also goes as one line (the service's stdout); None: nowhere.
        head_every: a head at least every this many records.
        segment_bytes: start a new segment once the current one is this large.
    """

    def __init__(
        self,
        directory: Path,
        *,
        signing: Callable[[], CA] | None = None,
        echo: IO[str] | None = None,
        head_every: int = HEAD_EVERY,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self.directory = directory
        self.signing = signing
        self.echo = echo
        self.head_every = head_every
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._flush = GroupFlush()  # tickets: the records' seq
        self._pid = 0
        self._segment = 0
        self._next = ""  # the path of the segment after the current one, looked for per record
        self._end = 0
        self._tail: tuple[int, str, str] = (0, GENESIS, "")  # seq, hash, kind of the last record

    def record(self, kind: str, by: str, **what: Any) -> dict[str, Any]:
        """Append one record, durable when this returns; also a head when one is due.

        Args:
            kind: one of `KINDS`, e.g. ``revocation``.
            by: who asked: the caller's credential identity (a SPIFFE ID), or who ran the CLI.
            **what: the rest, JSON-serialisable (names, serial, reason, ...).

        Returns:
            the record as written.

        Raises:
            ValueError: for an unknown kind.
            OSError: if the record could not be written: do not hand out what it records.
        """
        if kind not in KINDS:
            raise ValueError(f"audit record kind '{kind}' is unknown (one of {', '.join(KINDS)})")
        with self._lock, self._locked() as fd:
            if self.signing is not None and (self._tail[0] + 1) % self.head_every == 0:
                self._append(fd, self._head_fields())
            written = self._append(fd, {"kind": kind, "by": by, "what": what})
            durable = os.dup(fd)  # another thread may roll over and close ``fd`` meanwhile
        self._durable(written["seq"], durable)
        return written

    def issuance(self, by: str, issued: Issued, *, namespace: str | None = None) -> dict[str, Any]:
        """Record the issuance of ``issued``, asked for by ``by``."""
        return self.record(
            "issuance",
            by,
            names=list(issued.names),
            spiffe_id=issued.spiffe_id,
            namespace=namespace,
            serial=f"{issued.serial:x}",
            public_key_sha256=issued.public_key_sha256,
            not_after=_rfc3339(issued.not_after),
            issuer=issued.issuer,
        )

    def refusal(self, by: str, reason: str, message: str, **asked: Any) -> dict[str, Any]:
        """Record a signing request the CA refused, with its reason and what it asked for."""
        return self.record("refusal", by, reason=reason, message=message[:_TEXT_MAX], **asked)

    def rotation(self, by: str, state: State, *, previous: str | None) -> dict[str, Any]:
        """Record a root-rotation step (or a new root: ``previous`` None) that left ``state``,
        and sign the head at once, so the roots it names are the CA's word before it moves on.

        The record carries every root trusted after the step: a head signed under a root that a
        later step drops still verifies by it (`verify`).
        """
        written = self.record(
            "rotation",
            by,
            step=state.phase if previous is not None else "created",
            previous=previous,
            roots=[ca.root_pem.decode() for ca in state.generations],
            signing_intermediate=fingerprint(state.signer.intermediate),
        )
        self.sign_head()
        return written

    def renewal(self, by: str, state: State) -> dict[str, Any]:
        """Record a renewal of the signing intermediate (a new key under the same root)."""
        return self.record(
            "rotation",
            by,
            step="intermediate-renewed",
            previous=state.phase,
            roots=[ca.root_pem.decode() for ca in state.generations],
            signing_intermediate=fingerprint(state.signer.intermediate),
        )

    def sign_head(self) -> dict[str, Any] | None:
        """Write a head now unless the last record is one; returns it, or None."""
        if self.signing is None:
            return None
        with self._lock, self._locked() as fd:
            if self._tail[2] in ("head", ""):
                return None
            written = self._append(fd, self._head_fields())
            durable = os.dup(fd)
        self._durable(written["seq"], durable)
        return written

    def start(self, interval: float = HEAD_SECONDS) -> threading.Event:
        """Sign the head every ``interval`` seconds in a daemon thread; set the event to stop."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.sign_head()
                except Exception:  # the next round tries again; records still append
                    _log.exception("signing the audit head failed")

        threading.Thread(target=loop, name="hello-mtls-ca-audit", daemon=True).start()
        return stop

    def _durable(self, seq: int, fd: int) -> None:
        """Return once record ``seq`` (written through ``fd``, closed here) is on disk."""
        try:
            self._flush.wait(seq, fd)
        finally:
            os.close(fd)

    def _head_fields(self) -> dict[str, Any]:
        assert self.signing is not None
        ca = self.signing()
        if ca.intermediate_key is None:
            raise ValueError("the signing CA holds no intermediate key to sign the audit head")
        seq, digest, _ = self._tail
        signed_at = _now()
        message = _head_message(seq, digest, signed_at)
        key = ca.intermediate_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
        else:
            signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        what = {
            "records": seq,
            "head": digest,
            "signed_at": signed_at,
            "signature": base64.b64encode(signature).decode(),
            "certificate": base64.b64encode(
                ca.intermediate.public_bytes(serialization.Encoding.DER)
            ).decode(),
        }
        if ca.chain:  # under an organisation's intermediate: how the signer reaches the root
            what["chain"] = [
                base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                for c in ca.chain
            ]
        return {"kind": "head", "by": "hello-mtls-ca", "what": what, "time": signed_at}

    def _append(self, fd: int, fields: dict[str, Any]) -> dict[str, Any]:
        seq, prev, _ = self._tail
        document = {"v": _FORMAT, "seq": seq + 1, "time": _now(), "prev": prev, **fields}
        line = canonical(document)
        data = line + b"\n"
        written = os.write(fd, data)
        if written != len(data):  # a short write (disk full): leave no torn line behind
            os.ftruncate(fd, self._end)
            raise OSError(f"audit log {self._path(self._segment)}: short write")
        self._end += written
        self._tail = (seq + 1, hashlib.sha256(line).hexdigest(), fields["kind"])
        self._flush.wrote(seq + 1)
        if fields["kind"] == "head":
            # The head must be on disk before head.json names it, or a power cut would make
            # an intact log look truncated.
            os.fdatasync(fd)
            _replace(self.directory / "head.json", data)
        if self.echo is not None:
            try:
                self.echo.write(data.decode())
                self.echo.flush()
            except (OSError, ValueError) as e:  # the disk has it; a lost stdout stops no one
                _log.warning("audit record %s not copied to stdout: %s", seq + 1, e)
        return document

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """The current segment's descriptor, under the lock, with the tail brought up to date."""
        if self._pid != os.getpid():  # a forked worker opens its own descriptors
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._pid, self._fd, self._segment, self._end = os.getpid(), None, 0, 0
            self._flush = GroupFlush()
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        assert self._lock_fd is not None
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield self._current()
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _current(self) -> int:
        if self._fd is None:
            segments = _segments(self.directory)
            self._open(max(segments) if segments else 1)
        while os.path.exists(self._next):  # another process rolled over
            self._open(self._segment + 1)
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size != self._end:
            self._catch_up(size)
        if self._end >= self.segment_bytes:
            self._open(self._segment + 1)
        return self._fd

    def _open(self, segment: int) -> None:
        if self._fd is not None:
            os.fsync(self._fd)  # the closed segment is whole on disk before the next begins
            os.close(self._fd)
            self._flush.switched()
        path = self._path(segment)
        new = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        self._segment = segment
        self._next = str(self._path(segment + 1))
        self._end = 0 if new else -1
        if new:
            fsync_directory(self.directory)

    def _catch_up(self, size: int) -> None:
        """Read the last record another writer left (or mend a torn last line)."""
        assert self._fd is not None
        path = self._path(self._segment)
        if size == 0:
            self._end = 0
            self._tail = self._before()
            return
        if 0 < self._end < size <= self._end + _CATCH_UP_BYTES:
            # What other writers appended since this one's last record: whole lines, unless
            # one was torn.
            data = os.pread(self._fd, size - self._end, self._end)
            if data.endswith(b"\n"):
                self._end = size
                self._tail = _parse_tail(data.rstrip(b"\n").rpartition(b"\n")[2])
                return
        with path.open("rb") as f:
            data = _tail_bytes(f, size)
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            torn = data[cut:]
            keep = size - len(torn)
            aside = self.directory / f"torn-{self._segment:06d}-{keep}.bin"
            _replace(aside, torn)
            os.ftruncate(self._fd, keep)
            os.fsync(self._fd)
            self._end = keep
            self._tail = _last_record(path) if keep else self._before()
            self._append(
                self._fd,
                {
                    "kind": "recovery",
                    "by": "hello-mtls-ca",
                    "what": {
                        "torn_bytes": len(torn),
                        "torn_sha256": hashlib.sha256(torn).hexdigest(),
                        "kept_in": aside.name,
                    },
                },
            )
            return
        self._end = size
        self._tail = _parse_tail(data.rstrip(b"\n").rpartition(b"\n")[2])

    def _before(self) -> tuple[int, str, str]:
        previous = self._path(self._segment - 1)
        if self._segment > 1 and previous.exists():
            return _last_record(previous)
        return (0, GENESIS, "")

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:06d}.jsonl"


def canonical(document: Any) -> bytes:
    """The one byte form of a record: sorted keys, no spaces, ASCII."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass
class Verdict:
    """What `verify` found.

    Attributes:
        intact: no tampering found.
        records: records read (torn last line excluded).
        signed: records up to and including the last valid head.
        problem: the first bad record and what is wrong with it (None when intact).
        notes: what is not tampering but worth saying (a torn last line, unsigned records).
    """

    intact: bool
    records: int = 0
    signed: int = 0
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


def verify(directory: Path, bundle: Sequence[x509.Certificate]) -> Verdict:
    """Check the chain, every head's signature and the kept head in ``directory``.

    Args:
        directory: the log (``STATE/audit``).
        bundle: the trust bundle: roots the last head's intermediate must chain to. Heads from
            before a root rotation may chain to a root a covered ``rotation`` record names.
    """
    verdict = Verdict(intact=True)
    heads: list[tuple[str, dict[str, Any]]] = []
    named_roots: list[tuple[int, x509.Certificate]] = []
    seq, prev = 0, GENESIS
    segments = _segments(directory)
    for number in segments:
        path = directory / f"{number:06d}.jsonl"
        with path.open("rb") as f:
            lines = f.read().split(b"\n")
        last_segment = number == segments[-1]
        for index, line in enumerate(lines):
            where = f"{path.name} line {index + 1}"
            if index == len(lines) - 1:
                if line and last_segment:
                    verdict.notes.append(
                        f"{where}: a torn last line of {len(line)} bytes (a write cut short by a "
                        "crash; the next writer moves it aside)"
                    )
                elif line:
                    return _bad(verdict, f"{where}: a line without its newline inside the log")
                break
            try:
                document = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                return _bad(verdict, f"{where} (after seq {seq}): not a JSON record")
            if not isinstance(document, dict) or canonical(document) != line:
                return _bad(verdict, f"{where} (after seq {seq}): not a canonical record")
            if document.get("seq") != seq + 1:
                return _bad(
                    verdict,
                    f"{where}: seq {document.get('seq')} where {seq + 1} belongs "
                    "(records deleted or reordered)",
                )
            if document.get("prev") != prev:
                return _bad(
                    verdict,
                    f"{where} (seq {seq + 1}): its prev is not the hash of seq {seq} "
                    f"(seq {seq} was changed, or this record was)",
                )
            seq, prev = seq + 1, hashlib.sha256(line).hexdigest()
            verdict.records = seq
            kind = document.get("kind")
            what = document.get("what")
            if kind not in KINDS or not isinstance(what, dict):
                return _bad(verdict, f"{where} (seq {seq}): no record of a known kind")
            if kind == "head":
                heads.append((f"{where} (seq {seq})", document))
            elif kind == "rotation":
                for pem in what.get("roots", []):
                    with contextlib.suppress(ValueError, TypeError):
                        named_roots.append((seq, x509.load_pem_x509_certificate(pem.encode())))
    # The last head covers every record before it, so a root a rotation record before it names
    # is the CA's word, and heads from before that rotation may chain to it.
    covered = heads[-1][1]["seq"] if heads else 0
    older = [root for at, root in named_roots if at < covered]
    for i, (where, head) in enumerate(heads):
        last = i == len(heads) - 1
        trusted = list(bundle) if last else [*bundle, *older]
        problem = _check_head(head, trusted)
        if problem:
            return _bad(verdict, f"{where}: {problem}")
        verdict.signed = head["seq"]
    document = _kept_head(directory)
    if document is None and heads:
        return _bad(verdict, "head.json is missing while the log holds signed heads")
    if document is not None:
        found = next((h for _, h in heads if h["seq"] == document.get("seq")), None)
        if found is None or canonical(found) != canonical(document):
            return _bad(
                verdict,
                f"head.json names the signed head seq {document.get('seq')}, which the log "
                f"{'does not hold (truncated)' if found is None else 'holds otherwise'}",
            )
    if verdict.records > verdict.signed:
        verdict.notes.append(
            f"{verdict.records - verdict.signed} record(s) after the last signed head "
            "(signed within a minute by a running CA)"
        )
    return verdict


def read(directory: Path) -> Iterator[dict[str, Any]]:
    """Every whole record of the log in order (a torn last line skipped)."""
    for number in _segments(directory):
        with (directory / f"{number:06d}.jsonl").open("rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    yield json.loads(line)


def _check_head(head: dict[str, Any], trusted: Sequence[x509.Certificate]) -> str | None:
    what = head["what"]
    try:
        intermediate = x509.load_der_x509_certificate(base64.b64decode(what["certificate"]))
        chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in what.get("chain", [])]
        signature = base64.b64decode(what["signature"])
        if what["records"] != head["seq"] - 1 or what["head"] != head["prev"]:
            return "a head that signs another record than the one before it"
        message = _head_message(what["records"], what["head"], what["signed_at"])
    except (KeyError, TypeError, ValueError):
        return "a head without its certificate, signature or count"
    key = intermediate.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            return "a head signed by a key of an unknown type"
    except InvalidSignature:
        return "the head's signature does not verify (forged, or the record was changed)"
    top = intermediate
    for issuer in chain:
        try:
            top.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return "the head's chain is broken (a certificate not signed by the next)"
        top = issuer
    for root in trusted:
        with contextlib.suppress(ValueError, TypeError, InvalidSignature):
            top.verify_directly_issued_by(root)
            return None
    return (
        f"the head's signer {intermediate.subject.rfc4514_string()} does not chain to the trust "
        "bundle"
    )


def _head_message(records: int, digest: str, signed_at: str) -> bytes:
    return _HEAD_CONTEXT + canonical([records, digest, signed_at])


def _bad(verdict: Verdict, problem: str) -> Verdict:
    verdict.intact, verdict.problem = False, problem
    return verdict


def _kept_head(directory: Path) -> dict[str, Any] | None:
    try:
        data = (directory / "head.json").read_bytes()
    except FileNotFoundError:
        return None
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"seq": None}
    return document if isinstance(document, dict) else {"seq": None}


def _segments(directory: Path) -> list[int]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(_SEGMENT.match, names) if m)


def _tail_bytes(f: Any, size: int) -> bytes:
    """The end of the file holding at least its last whole line."""
    step = 64 * 1024
    start = max(0, size - step)
    while True:
        f.seek(start)
        data: bytes = f.read(size - start)
        if start == 0 or data.rstrip(b"\n").find(b"\n") >= 0:
            return data
        start = max(0, start - step)


def _last_record(path: Path) -> tuple[int, str, str]:
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = _tail_bytes(f, size)
    return _parse_tail(data.rstrip(b"\n").rpartition(b"\n")[2])


def _parse_tail(line: bytes) -> tuple[int, str, str]:
    document = json.loads(line)
    return int(document["seq"]), hashlib.sha256(line).hexdigest(), str(document["kind"])


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fsync_directory(path.parent)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
