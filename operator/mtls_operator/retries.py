"""When to try a failed Secret again: exponential backoff per Secret.

kopf retries only its changing handlers; the operator watches pods with ``on.event`` (which must
not write kopf's state onto users' pods), so failed attempts are scheduled here and picked up by
the reconcile loop. The loop and the worker threads use it at once, so it takes a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

__all__ = ["Retries"]


class Retries:
    """Backoff per key: ``initial`` seconds after the first failure, doubling up to ``maximum``."""

    def __init__(self, initial: float = 1.0, maximum: float = 60.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._lock = threading.Lock()
        self._failures: dict[Hashable, int] = {}
        self._due: dict[Hashable, float] = {}

    def failed(self, key: Hashable, now: float) -> float:
        """Record a failure of ``key`` at ``now`` (monotonic seconds); return the delay."""
        with self._lock:
            count = self._failures.get(key, 0) + 1
            self._failures[key] = count
            delay: float = min(self.maximum, self.initial * 2.0 ** (count - 1))
            self._due[key] = now + delay
            return delay

    def succeeded(self, key: Hashable) -> None:
        """Forget ``key``'s failures."""
        with self._lock:
            self._failures.pop(key, None)
            self._due.pop(key, None)

    def due(self, now: float) -> list[Hashable]:
        """Keys whose retry time has come, earliest first.

        Each is handed out once: it comes back only after the next `failed` (a retry that is
        still waiting for a worker is not queued again every second).
        """
        with self._lock:
            keys = sorted((k for k, t in self._due.items() if t <= now), key=self._due.__getitem__)
            for key in keys:
                del self._due[key]
            return keys

    def failures(self, key: Hashable) -> int:
        """How many times in a row ``key`` failed."""
        with self._lock:
            return self._failures.get(key, 0)
