"""Contexts that follow their certificate directory: checked on use, swapped whole."""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mtls_context import status as _status
from mtls_context.contexts import ALPN, MTLSContext, Side, Verify, build_context
from mtls_context.layout import DATA_LINK, FILES, federated_bundles, read_version

__all__ = [
    "DEFAULT_CHECK_INTERVAL",
    "DEFAULT_MAX_AGE",
    "ReloadingContext",
    "ReloadingServerContext",
]

DEFAULT_CHECK_INTERVAL = 1.0
DEFAULT_MAX_AGE = 3600.0

_log = logging.getLogger("mtls_context")

_Signature = tuple[object, ...]


class ReloadingContext:
    """Hands out the current context for a certificate directory; rebuilds it when files change.

    ``current()`` looks at the directory at most once per ``check_interval`` seconds (a
    ``readlink`` of ``..data``, or ``stat`` of the files in a plain directory). When the version
    changed it reads all files of one version, validates them and builds a brand-new context.
    A context older than ``max_age`` seconds is rebuilt from the same files even when nothing
    changed: its session tickets die with it and the certificates are checked for expiry again.
    Contexts already handed out are never modified, so connections made with them are not
    affected. On any failure the last good context stays in use and the reason is logged once.

    With ``background=True`` (for event loops) ``current()`` never reads a file or runs the
    self-test handshake: a daemon thread of this process checks every ``check_interval``
    seconds, and ``current()`` returns what it built last. Otherwise the check runs inline in
    the caller of ``current()`` once the interval has passed.

    ``status()`` says what it hands out and how its last reload went; every instance counts in
    `mtls_context.status.statuses` while it lives.

    Thread-safe and fork-safe: after a fork the first ``current()`` starts the child's thread.
    """

    def __init__(
        self,
        directory: Path,
        side: Side,
        *,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        max_age: float = DEFAULT_MAX_AGE,
        verify: Verify = "required",
        alpn: Sequence[str] = ALPN,
        peers: Sequence[str] = (),
        background: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Load the directory now.

        Raises:
            ValueError: if the directory does not hold a valid certificate set (message says why).
            OSError: if it cannot be read.
        """
        if check_interval < 0:
            raise ValueError(f"check interval must not be negative, got {check_interval}")
        if max_age <= 0:
            raise ValueError(f"max age must be positive, got {max_age}")
        self.directory = Path(directory)
        self.side = side
        self.check_interval = check_interval
        self.max_age = max_age
        self._verify: Verify = verify
        self._alpn = tuple(alpn)
        self._peers = tuple(peers)
        self._background = background
        self._clock = clock
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._watcher_pid = 0
        self._signature: _Signature | None = _signature(self.directory)
        files = read_version(self.directory)
        self._context = self._build(files)
        self._built = clock()
        self._digest = _digest(files)
        self._failure: object = None  # digest or reason of the last failure, logged once
        self._next_check = self._built + check_interval
        self._generation = 1
        self._loaded_at = _now()
        self._error: tuple[str, datetime] | None = None
        _log.info("%s: loaded %s", self.directory, _describe(self._context))
        _status.track(self)
        _status.changed()

    def status(self) -> _status.Status:
        """What new connections get now, and why newer files are not in use (if they are not)."""
        with self._status_lock:
            certificate = self._context.certificate
            generation, loaded_at, error = self._generation, self._loaded_at, self._error
        return _status.Status(
            directory=str(self.directory),
            side=self.side.value,
            pid=os.getpid(),
            identity=certificate.identity,
            serial=certificate.serial,
            not_after=certificate.not_after,
            generation=generation,
            loaded_at=loaded_at,
            error=error[0] if error else None,
            error_at=error[1] if error else None,
            crl_enforced=self._context.crl.pem is not None,
            crl_stale=self._context.crl.stale,
        )

    def current(self) -> MTLSContext:
        """The context to use for a new connection."""
        if self._background:
            if self._watcher_pid != os.getpid():
                self._start_watcher()
            return self._context
        if self._clock() < self._next_check:
            return self._context
        with self._lock:
            if self._clock() >= self._next_check:
                self._check()
            return self._context

    def _start_watcher(self) -> None:
        with self._start_lock:
            if self._watcher_pid == os.getpid():
                return
            # A fork copies locks as they were: a check running in the parent held this one.
            self._lock = threading.Lock()
            self._status_lock = threading.Lock()
            self._watcher_pid = os.getpid()
            threading.Thread(
                target=_watch, args=(weakref.ref(self),), name="mtls_context-watch", daemon=True
            ).start()

    def _check(self) -> None:
        """With the lock held: look at the directory, rebuild if needed, schedule the next look."""
        try:
            now = self._clock()
            self._next_check = now + self.check_interval
            drop_at = self._context.crl.drop_at
            # A CRL near its nextUpdate must go before OpenSSL would refuse peers over it.
            expired = now - self._built >= self.max_age or (
                drop_at is not None and _now() >= drop_at
            )
            signature = _signature(self.directory)
            if signature == self._signature and not expired:
                return
            files = read_version(self.directory)
        except OSError as e:
            self._signature = None  # read again next time, even if nothing seems to change
            self._fail(f"cannot read: {e}", key=str(e))
            return
        self._signature = signature
        digest = _digest(files)
        if digest == self._failure:
            return
        if digest == self._digest and not expired:
            self._recovered()  # the files in use are back
            return
        try:
            context = self._build(files)
        except ValueError as e:
            self._fail(str(e), key=digest)
            return
        what = "reloaded" if digest != self._digest else "rebuilt (max age)"
        with self._status_lock:
            self._context, self._digest, self._failure, self._built = context, digest, None, now
            self._generation += 1
            self._loaded_at = _now()
            self._error = None
        _log.info("%s: %s, now %s", self.directory, what, _describe(context))
        _status.changed()

    def _build(self, files: dict[str, bytes]) -> MTLSContext:
        context = build_context(
            files, self.side, verify=self._verify, alpn=self._alpn, peers=self._peers
        )
        if context.crl.stale is not None:
            _log.warning("%s: serving without CRL checking: %s", self.directory, context.crl.stale)
        if context.federation is not None and context.federation.missing:
            _log.warning(
                "%s: no bundle of %s beside ca.crt: its peers are refused",
                self.directory,
                ", ".join(context.federation.missing),
            )
        return context

    def _fail(self, reason: str, *, key: object) -> None:
        if key == self._failure:
            return
        _log.warning("%s: keeping %s: %s", self.directory, _describe(self._context), reason)
        with self._status_lock:
            self._failure = key
            self._error = (reason, _now())
        _status.changed()

    def _recovered(self) -> None:
        if self._error is None:
            return
        with self._status_lock:
            self._failure = self._error = None
        _status.changed()


def _watch(reference: weakref.ref[ReloadingContext]) -> None:
    """The background check loop; ends with its context or in a forked child."""
    pid = os.getpid()
    while (reloading := reference()) is not None and reloading._watcher_pid == pid:
        interval = max(reloading.check_interval, 0.01)
        del reloading  # a sleeping watcher must not keep its context alive
        time.sleep(interval)
        if (reloading := reference()) is None:
            return
        with reloading._lock:
            reloading._check()
        del reloading


class ReloadingServerContext(ssl.SSLContext):
    """One ``ssl.SSLContext`` to give a server once, which serves every connection whole from
    the current generation of a certificate directory.

    Pass it wherever a server takes an ``SSLContext``: ``asyncio.start_server(ssl=...)``,
    aiohttp's ``TCPSite``, uvicorn's ``ssl_context_factory``, hypercorn's
    ``Config.create_ssl_context``. Each ``wrap_bio``/``wrap_socket`` (once per connection) is
    made by the current generation's context, so a connection gets that generation's
    certificate, key, trust bundle, verify mode, versions, ciphers, groups and ticket key
    together. On an event loop this costs an attribute read per connection; new files are
    read and validated on this process's watcher thread (``background=True``).

    Settings made on this object itself are not used: configure it through the constructor.
    """

    _reloading: ReloadingContext

    def __new__(cls, *args: Any, **kwargs: Any) -> ReloadingServerContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)

    def __init__(
        self,
        directory: Path,
        *,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        max_age: float = DEFAULT_MAX_AGE,
        verify: Verify = "required",
        alpn: Sequence[str] = ALPN,
        peers: Sequence[str] = (),
    ) -> None:
        """Load the directory now (see `ReloadingContext` for the arguments; ``peers``: the
        clients of federated trust domains to accept, `mtls_context.build_context`).

        Raises:
            ValueError: if the directory does not hold a valid certificate set.
            OSError: if it cannot be read.
        """
        self._reloading = ReloadingContext(
            Path(directory),
            Side.SERVER,
            check_interval=check_interval,
            max_age=max_age,
            verify=verify,
            alpn=alpn,
            peers=peers,
            background=True,
        )
        # Only what callers may read: a server that inspects its context sees the real mode.
        self.verify_mode = self._reloading.current().verify_mode

    def current(self) -> MTLSContext:
        """The generation new connections get now."""
        return self._reloading.current()

    def status(self) -> _status.Status:
        """What new connections get now (see `ReloadingContext.status`)."""
        return self._reloading.status()

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        return self._reloading.current().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return self._reloading.current().wrap_socket(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        # uvicorn pickles its config for worker processes: each process loads the directory.
        r = self._reloading
        arguments = (r.directory, r.check_interval, r.max_age, r._verify, r._alpn, r._peers)
        return (_reloading_server_context, arguments)


def _reloading_server_context(
    directory: Path,
    check_interval: float,
    max_age: float,
    verify: Verify,
    alpn: Sequence[str],
    peers: Sequence[str],
) -> ReloadingServerContext:
    return ReloadingServerContext(
        directory,
        check_interval=check_interval,
        max_age=max_age,
        verify=verify,
        alpn=alpn,
        peers=peers,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _signature(directory: Path) -> _Signature:
    """Changes whenever a new version lands; cheap enough to call on every check."""
    try:
        return (os.readlink(directory / DATA_LINK),)
    except OSError:
        pass
    signature: list[object] = []
    try:
        present = os.listdir(directory)
    except OSError:
        present = []
    for name in (*FILES, *sorted(federated_bundles(present).values())):
        try:
            st = os.stat(directory / name)
            signature.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            signature.append(None)
    return tuple(signature)


def _digest(files: dict[str, bytes]) -> bytes:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + len(files[name]).to_bytes(8, "big") + files[name])
    return h.digest()


def _describe(context: MTLSContext) -> str:
    cert = context.certificate
    crl = "CRL enforced" if context.crl.pem is not None else "no CRL"
    return (
        f"certificate {cert.identity} serial {cert.serial} "
        f"valid until {cert.not_after:%Y-%m-%dT%H:%M:%SZ}, TLS policy {context.policy.profile}, "
        f"{crl}"
    )
