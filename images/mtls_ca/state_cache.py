"""The cached view of the CA state that request handlers read.

`StateCache` hands every request the current `State`, re-reading the store only when its version
changed, and keeps the last good state when the store cannot be read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .state import State, Store

__all__ = ["StateCache"]

_log = logging.getLogger("mtls_ca")


class StateCache:
    """The current CA state for request handlers; thread-safe.

    Args:
        store: where the state lives.
        refresh_interval: look at the store's version at most this often, in seconds (a
            ``stat`` of the state file: 0 is fine).
    """

    def __init__(
        self,
        store: Store,
        *,
        refresh_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._version: str | None = store.version()
        self._state = store.load()
        self._next_check = clock() + refresh_interval
        self._failing = False

    def state(self) -> State:
        """The current state; re-read when the store changed.

        If the store cannot be read (API server unreachable, a damaged write), the last good
        state stays in use and the failure is logged: the CA keeps signing with keys it has.
        """
        if self._clock() < self._next_check:
            return self._state
        # The common case, the store unchanged, takes no lock: every request of every thread
        # comes here (a refresh interval of 0), and they would queue on it. `_state` is always
        # set before `_version`, so a matching version has its state in place.
        try:
            unchanged = self.store.version() == self._version
        except (OSError, ValueError, LookupError):
            unchanged = False  # the locked path logs it
        if unchanged:
            self._failing = False
            self._next_check = self._clock() + self.refresh_interval
            return self._state
        with self._lock:
            try:
                version = self.store.version()
                if version != self._version:
                    self._state = self.store.load()
                    self._version = version
                self._failing = False
            except (OSError, ValueError, LookupError) as e:
                if not self._failing:
                    _log.warning("keeping the CA state read before: %s", e)
                self._failing = True
            self._next_check = self._clock() + self.refresh_interval
            return self._state

    def update(self, change: Callable[[State], State]) -> State:
        """Change the stored state atomically (see `Store.update`) and use the result at once.

        Its version is not known: another writer may have written after the store's lock was
        released, so ``store.version()`` now could belong to a newer state. The next check reads
        the store again.
        """
        new = self.store.update(change)
        with self._lock:
            self._state, self._version = new, None
        return new
