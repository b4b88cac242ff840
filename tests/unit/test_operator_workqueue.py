"""The operator's work queue: each key once, never on two threads at once, nothing lost."""

from __future__ import annotations

import threading

import pytest

from harness.waiting import wait_until
from mtls_operator.workqueue import WorkQueue


class Recorder:
    """A handler that records calls and can be held inside a call until released."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()

    def __call__(self, key: str) -> None:
        with self._lock:
            self.overlaps += key in self.running
            self.running.add(key)
            self.calls.append(key)
        self.entered.set()
        self.release.wait(10)
        with self._lock:
            self.running.discard(key)
        if key == "boom":
            raise RuntimeError("a handler bug")


def held(first: str, *, workers: int, grouped: bool = False) -> tuple[Recorder, WorkQueue[str]]:
    """A queue whose handler is inside the call for ``first`` until ``release`` is set; its keys
    ``grouped`` by what comes before their ``/``, or in one group."""
    handler = Recorder()
    handler.release.clear()
    if grouped:
        work = WorkQueue(handler, workers=workers, group=lambda key: key.split("/")[0])
    else:
        work = WorkQueue(handler, workers=workers)
    work.add(first)
    assert handler.entered.wait(10)
    return handler, work


def test_keys_added_while_waiting_are_handled_once() -> None:
    handler, work = held("blocker", workers=1)
    for _ in range(5):
        work.add("a")
        work.add("b")
    assert len(work) == 2
    handler.release.set()
    assert work.join(10)
    assert handler.calls == ["blocker", "a", "b"]


def test_a_key_re_added_while_busy_runs_again_afterwards_never_alongside() -> None:
    handler, work = held("a", workers=2)
    work.add("a")  # an idle worker, but "a" is busy: it must wait for the first call
    # Keys are handed out in order: had "a" been, the idle worker would be inside it, not "b".
    work.add("b")
    wait_until("the idle worker to take b", lambda: "b" in handler.calls, timeout=10, interval=0.01)
    assert handler.calls == ["a", "b"]
    handler.release.set()
    assert work.join(10)
    assert handler.calls == ["a", "b", "a"] and handler.overlaps == 0


def test_many_keys_on_many_threads_are_all_handled() -> None:
    handler = Recorder()
    work = WorkQueue(handler, workers=8)
    keys = [f"k{n}" for n in range(500)]
    for key in keys:
        work.add(key)
    assert work.join(30)
    assert sorted(handler.calls) == sorted(keys) and handler.overlaps == 0


def test_a_failing_handler_does_not_stop_the_workers() -> None:
    handler = Recorder()
    work = WorkQueue(handler, workers=1)
    work.add("boom")
    work.add("after")
    assert work.join(10)
    assert handler.calls == ["boom", "after"]


def test_join_reports_a_timeout() -> None:
    handler = Recorder()
    handler.release.clear()
    work = WorkQueue(handler, workers=1)
    work.add("slow")
    assert not work.join(0.1)
    handler.release.set()
    assert work.join(10)


def test_at_least_one_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        WorkQueue(Recorder(), workers=0)


def test_groups_take_turns() -> None:
    handler, work = held("blocker", workers=1, grouped=True)
    for n in range(100):
        work.add(f"churn/{n}")
    work.add("quiet/a")
    work.add("other/a")
    work.add("quiet/b")
    handler.release.set()
    assert work.join(10)
    # Without groups "quiet/a" would wait behind all 100 of churn's keys.
    assert handler.calls[:6] == ["blocker", "churn/0", "quiet/a", "other/a", "churn/1", "quiet/b"]
    assert sorted(handler.calls[6:]) == sorted(f"churn/{n}" for n in range(2, 100))


def test_a_key_re_added_while_busy_goes_to_the_end_of_its_group_only() -> None:
    handler, work = held("churn/0", workers=1, grouped=True)
    work.add("churn/0")
    for n in range(1, 4):
        work.add(f"churn/{n}")
    work.add("quiet/a")
    handler.release.set()
    assert work.join(10)
    assert handler.calls == ["churn/0", "churn/1", "quiet/a", "churn/2", "churn/3", "churn/0"]
