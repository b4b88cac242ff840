"""How the e2e modules share the one installed product when ``make e2e`` runs them side by side
(pytest-xdist, ``--dist loadfile``: a module runs whole on one worker).

A module declares how it shares (docs/testing.md, "Running e2e modules side by side"):

- ``pytest.mark.alone("why")``: nothing else runs beside it. For a module that disturbs the
  shared install (restarts or kills the operator or the CA, floods the operator) or reads CA-wide
  state that another module's root rotation changes. The alone modules run first, one at a time.
- ``pytest.mark.long_running("why")``: it shares, and takes many minutes; among the modules that
  share it starts first, so the pass lasts about as long as the longest module.
- no mark: it shares (it only needs the product serving its own namespace).
- ``pytest.mark.own_install("why")``: it installs the product itself (the upgrade from the
  previous release, the two federated installs), scoped to its own namespaces
  (``operator.watchNamespaces``), so such modules run side by side with each other; the shared
  install serves every namespace, so they run only in a run of their own, and
  `keep_own_installs_apart` deselects them from any other.

`order` puts the items in that order (``--no-loadscope-reorder`` keeps it for the scheduler);
`Lanes` makes it hold at run time: an alone module holds an exclusive lock on a file in a
directory every worker of the run sees, and a module that shares starts only once every alone
module of the run has finished. `SharingScheduling` hands the modules to the workers so that
two long-running ones never queue behind each other.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadFileScheduling
from xdist.workermanage import WorkerController

from harness.waiting import wait_until
from support.cluster_api import log

__all__ = [
    "ALONE",
    "LONG_RUNNING",
    "Lanes",
    "SharingScheduling",
    "module_of",
    "keep_own_installs_apart",
    "order",
    "write_long_running",
]

ALONE = "alone"
LONG_RUNNING = "long_running"
OWN_INSTALL = "own_install"
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


def keep_own_installs_apart(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``own_install`` modules when the run has other modules (they need the shared
    install, which cannot sit beside another one), saying how to run them."""
    own = [item for item in items if item.get_closest_marker(OWN_INSTALL)]
    if not own or len(own) == len(items):
        return
    modules = sorted({module_of(item) for item in own})
    log(
        f"deselected {', '.join(modules)}: it installs the product itself, so it runs on its own"
        f" (make e2e E2E_TESTS={' '.join(modules)}; hack/ci.sh does, before the Helm pass)"
    )
    config.hook.pytest_deselected(items=own)
    items[:] = [item for item in items if not item.get_closest_marker(OWN_INSTALL)]


def module_of(item: pytest.Item) -> str:
    """The node id of the item's module (``tests/e2e/test_x.py``)."""
    return item.nodeid.split("::")[0]


def write_long_running(shared: Path, items: list[pytest.Item]) -> None:
    """Tell the controller's scheduler which modules are long-running (it collects nothing)."""
    long_running = sorted({module_of(i) for i in items if i.get_closest_marker(LONG_RUNNING)})
    written = shared / f"long-running.{os.getpid()}"
    written.write_text(json.dumps(long_running))
    written.replace(shared / "long-running.json")


class SharingScheduling(LoadFileScheduling):  # type: ignore[misc]  # xdist has no types
    """``--dist loadfile`` with two changes for the e2e modules.

    A worker gets its next module only once its last pending test is about to start (xdist gives
    it one while two are left, and a module queued behind a 15-minute test waits for it), and
    never a long-running module while another one is pending on it. Uses xdist's scheduler
    internals (the version is locked in requirements/dev.txt).
    """

    def __init__(self, config: pytest.Config, log: Producer, shared: Path) -> None:
        super().__init__(config, log)
        self._shared = shared

    def _long_running(self) -> set[str]:
        return set(json.loads((self._shared / "long-running.json").read_text()))

    def _reschedule(self, node: WorkerController) -> None:
        if node.shutting_down:
            return
        if not self.workqueue:
            node.shutdown()
            return
        if self._pending_of(self.assigned_work[node]) > 1:
            return
        self._assign_work_unit(node)

    def _assign_work_unit(self, node: WorkerController) -> None:
        long_running = self._long_running()
        pending = self.assigned_work.get(node, {})
        busy = any(s in long_running and not all(pending[s].values()) for s in pending)
        scope = next(
            (s for s in self.workqueue if not (busy and s in long_running)),
            next(iter(self.workqueue)),
        )
        self.workqueue.move_to_end(scope, last=False)
        super()._assign_work_unit(node)


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
