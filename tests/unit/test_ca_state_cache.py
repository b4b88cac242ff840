"""The service's cached view of the CA state: follows the store, keeps the last good state."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mtls_ca.state import DirectoryStore
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
