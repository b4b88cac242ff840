"""Fixtures the unit tests share: a CA state store, and issuers for certificate directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtls_ca.authority import CA
from mtls_ca.state import DirectoryStore, State
from support.certdirs import Issuer


@pytest.fixture()
def store(tmp_path: Path) -> DirectoryStore:
    """A directory store holding a fresh CA (intermediate profile, default bounds)."""
    store = DirectoryStore(tmp_path / "state")
    store.create(State(generations=(CA.create(),)))
    return store


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    """A root and an intermediate that sign the leaves of a module's certificate directories."""
    return Issuer()


@pytest.fixture(scope="module")
def other_issuer() -> Issuer:
    """Another, unrelated one (a foreign CA)."""
    return Issuer()
