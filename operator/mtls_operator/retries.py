"""When to try a failed Secret again: exponential backoff per Secret. Pure bookkeeping.

kopf retries only its changing handlers; the operator watches pods with ``on.event`` (which must
not write kopf's state onto users' pods), so failed attempts are scheduled here and picked up by
the reconcile loop.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

__all__ = ["Retries"]


@dataclass
class Retries:
    """Backoff per key: ``initial`` seconds after the first failure, doubling up to ``maximum``."""

    initial: float = 1.0
    maximum: float = 60.0
    _failures: dict[Hashable, int] = field(default_factory=dict)
    _due: dict[Hashable, float] = field(default_factory=dict)

    def failed(self, key: Hashable, now: float) -> float:
        """Record a failure of ``key`` at ``now`` (monotonic seconds); return the delay."""
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        delay: float = min(self.maximum, self.initial * 2.0 ** (count - 1))
        self._due[key] = now + delay
        return delay

    def succeeded(self, key: Hashable) -> None:
        """Forget ``key``'s failures."""
        self._failures.pop(key, None)
        self._due.pop(key, None)

    def due(self, now: float) -> list[Hashable]:
        """Keys whose retry time has come, earliest first; they stay scheduled until resolved."""
        return sorted((k for k, t in self._due.items() if t <= now), key=self._due.__getitem__)

    def failures(self, key: Hashable) -> int:
        """How many times in a row ``key`` failed."""
        return self._failures.get(key, 0)
