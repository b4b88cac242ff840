"""A queue of Secret keys to reconcile, each queued once, worked off by a fixed pool of threads.

The idea is client-go's workqueue: an event only says *which* Secret needs a look, so a burst of
events for one key collapses into one entry, and a key that is re-added while a thread handles
it runs once more afterwards (never on two threads at once). Kopf's handlers therefore return at
once and drop the event bodies, instead of holding one body per waiting event while a few
threads make keys and call the CA: with a thousand new pods, that backlog was what the
operator's memory grew by.

Keys wait in one line per group (the operator groups by namespace) and the groups take turns:
one namespace that churns thousands of pods costs another namespace's pod one turn per
namespace with keys waiting, not a place behind all of them.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["WorkQueue"]

_log = logging.getLogger("mtls_operator")
K = TypeVar("K", bound=Hashable)


def _one_group(_: object) -> None:
    return None


class WorkQueue(Generic[K]):
    """Keys handed to ``handle`` by ``workers`` daemon threads: within a group in the order they
    were added, the groups (``group(key)``; by default one) taking turns."""

    def __init__(
        self,
        handle: Callable[[K], None],
        *,
        workers: int,
        group: Callable[[K], Hashable] = _one_group,
    ) -> None:
        if workers < 1:
            raise ValueError(f"a work queue needs at least one worker, not {workers}")
        self._handle = handle
        self._group = group
        lock = threading.Lock()
        self._ready = threading.Condition(lock)  # a key is in line
        self._idle = threading.Condition(lock)  # nothing in line or being handled
        self._lines: dict[Hashable, collections.deque[K]] = {}  # by group, only non-empty
        self._turns: collections.deque[Hashable] = collections.deque()  # the groups in _lines
        self._dirty: set[K] = set()  # added and not yet handed out
        self._busy: set[K] = set()  # being handled now
        self._threads = [
            threading.Thread(target=self._work, name=f"reconcile-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def add(self, key: K) -> None:
        """Have ``key`` handled soon; a key already waiting is not queued twice."""
        with self._ready:
            if key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._busy:  # else it goes back in line when its handler returns
                self._line_up(key)

    def __len__(self) -> int:
        """Keys waiting (not counting those being handled)."""
        with self._ready:
            return len(self._dirty)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until nothing is waiting or being handled; False if ``timeout`` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._dirty and not self._busy, timeout)

    def _work(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._turns))
                key = self._next()
                self._dirty.discard(key)
                self._busy.add(key)
            try:
                self._handle(key)
            except Exception:  # a handler's bug must not take a worker thread down
                _log.exception("handling %s failed", key)
            finally:
                with self._ready:
                    self._busy.discard(key)
                    if key in self._dirty:
                        self._line_up(key)
                    elif not self._dirty and not self._busy:
                        self._idle.notify_all()

    def _line_up(self, key: K) -> None:
        """With the lock held: ``key`` at the end of its group's line."""
        group = self._group(key)
        line = self._lines.get(group)
        if line is None:
            line = self._lines[group] = collections.deque()
            self._turns.append(group)
        line.append(key)
        self._ready.notify()

    def _next(self) -> K:
        """With the lock held and a key in line: the first key of the group whose turn it is."""
        group = self._turns.popleft()
        line = self._lines[group]
        key = line.popleft()
        if line:
            self._turns.append(group)
        else:
            del self._lines[group]
        return key
