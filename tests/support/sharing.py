"""How the e2e modules share the one installed product when ``make e2e`` runs them side by side
(pytest-xdist, ``--dist loadfile``: a module runs whole on one worker).

A module declares how it shares (docs/testing.md, "Running e2e modules side by side"):

- ``pytest.mark.alone("why")``: nothing else runs beside it. For a module that disturbs the
  shared install (restarts or kills the operator or the CA, floods the operator) or reads CA-wide
  state that another module's root rotation changes. The alone modules run first, one at a time.
- ``pytest.mark.long_running("why")``: it shares, and takes many minutes; among the modules that
  share it starts first, so the pass lasts about as long as the longest module.
- no mark: it shares (it only needs the product serving its own namespace).

`order` puts the items in that order (``--no-loadscope-reorder`` keeps it for the scheduler);
`Lanes` makes it hold at run time: an alone module holds an exclusive lock on a file in a
directory every worker of the run sees, and a module that shares starts only once every alone
module of the run has finished.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support.cluster_api import log
from support.waiting import wait_until

__all__ = ["ALONE", "LONG_RUNNING", "Lanes", "order"]

ALONE = "alone"
LONG_RUNNING = "long_running"
ALONE_MODULES_TIMEOUT = 3 * 3600
"""Seconds a module that shares waits for the alone modules: their own timeouts bound them."""


def _rank(item: pytest.Item) -> int:
    if item.get_closest_marker(ALONE):
        return 0
    return 1 if item.get_closest_marker(LONG_RUNNING) else 2


def order(items: list[pytest.Item]) -> None:
    """Alone modules first, then the long-running ones, then the rest (stable: each module's
    items stay together and in their order)."""
    items.sort(key=_rank)


def _file_name(module: str) -> str:
    return module.replace("/", "_").replace(".", "_")


class Lanes:
    """The run-time rule, in one worker (or in a run without workers).

    Args:
        shared: a directory every worker of the run sees.
        alone: the node ids of the alone modules in this run.
    """

    def __init__(self, shared: Path, alone: set[str]) -> None:
        self._lock = shared / "alone.lock"
        self._done = shared / "alone-done"
        self._done.mkdir(exist_ok=True)
        self._alone = alone

    @contextmanager
    def module(self, module: str) -> Iterator[None]:
        """Hold module ``module``'s place while all of its tests run."""
        if module in self._alone:
            with self._lock.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                log(f"{module} runs alone")
                try:
                    yield
                finally:
                    (self._done / _file_name(module)).touch()
                    fcntl.flock(lock, fcntl.LOCK_UN)
            return
        waiting = {_file_name(m) for m in self._alone}
        if not waiting <= set(os.listdir(self._done)):
            log(f"{module} waits for the alone modules")
            wait_until(
                "every alone module to finish",
                lambda: waiting <= set(os.listdir(self._done)),
                timeout=ALONE_MODULES_TIMEOUT,
                interval=2,
            )
        yield
