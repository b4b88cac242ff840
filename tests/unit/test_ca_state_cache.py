"""The service's cached view of the CA state: follows the store, keeps the last good state, and
never hides another writer's change."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from mtls_ca.state import DirectoryStore, State
from mtls_ca.state_cache import StateCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_state_cache_follows_the_store(store: DirectoryStore) -> None:
    clock = Clock()
    cache = StateCache(store, refresh_interval=5.0, clock=clock)
    first = cache.state()
    DirectoryStore(store.directory).update(lambda s: replace(s, tls_profile="modern"))
    assert cache.state() is first  # within the refresh interval: cached
    clock.now = 5.0
    assert cache.state().tls_profile == "modern"
    updated = cache.update(lambda s: replace(s, tls_profile="intermediate"))
    assert cache.state() is updated


def test_state_cache_keeps_the_last_good_state(
    store: DirectoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    cache = StateCache(store)
    good = cache.state()
    (store.directory / "state.json").write_text("{damaged")
    assert cache.state() is good
    assert cache.state() is good
    assert [r.getMessage() for r in caplog.records].count(
        "keeping the CA state read before: CA state is damaged: JSONDecodeError: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    ) == 1
    DirectoryStore(store.directory)._write(replace(good, tls_profile="modern"))
    assert cache.state().tls_profile == "modern"


class PausingStore(DirectoryStore):
    """A `DirectoryStore` whose next `update` stops after its write, until told to go on."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.wrote = threading.Event()
        self.go_on = threading.Event()

    def update(self, change: Callable[[State], State]) -> State:
        new = super().update(change)  # written, and the store's lock released
        self.wrote.set()
        assert self.go_on.wait(10)
        return new


def test_a_write_in_between_is_not_hidden_by_the_first_writers_cache(
    store: DirectoryStore,
) -> None:
    # Issue 13: a worker cached its own write under the version of a write made after it (read
    # once the store's lock was released), and never saw that other worker's rotation step.
    first_store = PausingStore(store.directory)
    first = StateCache(first_store)
    second = StateCache(DirectoryStore(store.directory))

    writer = threading.Thread(target=first.update, args=(lambda s: s.rotated(expected="idle"),))
    writer.start()
    assert first_store.wrote.wait(10)
    # The second worker moves the rotation on between the first one's write and its caching.
    assert second.update(lambda s: s.rotated(expected="both-trusted")).phase == "new-signing"
    first_store.go_on.set()
    writer.join(10)

    assert DirectoryStore(store.directory).load().phase == "new-signing"
    assert first.state().phase == "new-signing"
    assert second.state().phase == "new-signing"
