"""Fixtures the CA's unit tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtls_ca.authority import CA
from mtls_ca.state import DirectoryStore, State


@pytest.fixture()
def store(tmp_path: Path) -> DirectoryStore:
    """A directory store holding a fresh CA (intermediate profile, default bounds)."""
    store = DirectoryStore(tmp_path / "state")
    store.create(State(generations=(CA.create(),)))
    return store
