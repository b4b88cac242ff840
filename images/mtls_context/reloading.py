"""A context that follows its certificate directory: checked on use, swapped whole."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mtls_context.contexts import MTLSContext, Side, build_context
from mtls_context.layout import DATA_LINK, FILES, read_version

__all__ = ["DEFAULT_CHECK_INTERVAL", "ReloadingContext"]

DEFAULT_CHECK_INTERVAL = 1.0

_log = logging.getLogger("mtls_context")

_Signature = tuple[object, ...]


class ReloadingContext:
    """Hands out the current context for a certificate directory; rebuilds it when files change.

    ``current()`` looks at the directory at most once per ``check_interval`` seconds (a
    ``readlink`` of ``..data``, or ``stat`` of the files in a plain directory). When the version
    changed it reads all files of one version, validates them and builds a brand-new context.
    Contexts already handed out are never modified, so connections made with them are not
    affected. On any failure the last good context stays in use and the reason is logged once.

    Thread-safe; no background thread, so it survives ``fork`` (create it in the worker anyway).
    """

    def __init__(
        self,
        directory: Path,
        side: Side,
        *,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Load the directory now.

        Raises:
            ValueError: if the directory does not hold a valid certificate set (message says why).
            OSError: if it cannot be read.
        """
        if check_interval < 0:
            raise ValueError(f"check interval must not be negative, got {check_interval}")
        self.directory = Path(directory)
        self.side = side
        self.check_interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._signature = _signature(self.directory)
        files = read_version(self.directory)
        self._context = build_context(files, side)
        self._digest = _digest(files)
        self._failure: object = None  # digest or reason of the last failure, logged once
        self._next_check = clock() + check_interval
        _log.info("%s: loaded %s", self.directory, _describe(self._context))

    def current(self) -> MTLSContext:
        """The context to use for a new connection."""
        if self._clock() < self._next_check:
            return self._context
        with self._lock:
            now = self._clock()
            if now >= self._next_check:
                self._check()
                self._next_check = now + self.check_interval
            return self._context

    def _check(self) -> None:
        try:
            signature = _signature(self.directory)
            if signature == self._signature:
                return
            files = read_version(self.directory)
        except OSError as e:
            self._fail(f"cannot read: {e}", key=str(e))
            return
        self._signature = signature
        digest = _digest(files)
        if digest in (self._digest, self._failure):
            return
        try:
            context = build_context(files, self.side)
        except ValueError as e:
            self._fail(str(e), key=digest)
            return
        self._context, self._digest, self._failure = context, digest, None
        _log.info("%s: reloaded, now %s", self.directory, _describe(context))

    def _fail(self, reason: str, *, key: object) -> None:
        if key != self._failure:
            _log.warning("%s: keeping %s: %s", self.directory, _describe(self._context), reason)
        self._failure = key


def _signature(directory: Path) -> _Signature:
    """Changes whenever a new version lands; cheap enough to call on every check."""
    try:
        return (os.readlink(directory / DATA_LINK),)
    except OSError:
        pass
    signature: list[object] = []
    for name in FILES:
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
    return (
        f"certificate {cert.identity} serial {cert.serial} "
        f"valid until {cert.not_after:%Y-%m-%dT%H:%M:%SZ}, TLS policy {context.policy.profile}"
    )
