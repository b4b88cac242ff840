"""``serve --create-if-missing`` creates a missing state with the settings it was given, and
``serve`` brings an existing state to them (lifetime bounds, TLS profile; never the trust
domain)."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path

import pytest

from mtls_ca.authority import CA
from mtls_ca.gunicorn_app import ServeOptions, _ensure_state
from mtls_ca.state import DirectoryStore, State, StateNotFound


class EmptyStore:
    location = "/var/lib/hello-mtls-ca/state"

    def __init__(self) -> None:
        self.created: State | None = None

    def load(self) -> State:
        raise StateNotFound(self.location)

    def create(self, state: State) -> State:
        self.created = state
        return state


def options() -> ServeOptions:
    return ServeOptions(
        state=Path("/var/lib/hello-mtls-ca/state"),
        bind="127.0.0.1:0",
        workers=1,
        threads=1,
        serving_names=("localhost",),
        serving_duration=datetime.timedelta(hours=1),
        tls_dir=Path("unused"),
        provisioner_secret=None,
        provisioner_duration=datetime.timedelta(days=1),
        upkeep_interval=30,
        refresh_interval=5,
        trust_domain="cluster.local",
        profile="intermediate",
        create_if_missing=True,
    )


def test_a_created_state_takes_the_bounds_given_to_serve() -> None:
    store = EmptyStore()
    minute, week = datetime.timedelta(minutes=1), datetime.timedelta(days=7)
    _ensure_state(store, replace(options(), minimum=minute, maximum=week))  # type: ignore[arg-type]
    assert store.created is not None
    assert (store.created.minimum, store.created.maximum) == (minute, week)


def test_without_bounds_the_state_has_the_ca_defaults() -> None:
    store = EmptyStore()
    _ensure_state(store, options())  # type: ignore[arg-type]
    assert store.created is not None
    assert store.created.minimum == datetime.timedelta(minutes=5)
    assert store.created.maximum == datetime.timedelta(days=30)


def test_without_create_if_missing_a_missing_state_is_an_error() -> None:
    store = EmptyStore()
    with pytest.raises(StateNotFound):
        _ensure_state(store, replace(options(), create_if_missing=False))  # type: ignore[arg-type]
    assert store.created is None


@pytest.fixture
def existing(tmp_path: Path) -> DirectoryStore:
    store = DirectoryStore(tmp_path / "state")
    store.create(State(generations=(CA.create(),), trust_domain="cluster.local"))
    return store


def test_an_existing_state_takes_new_bounds_and_profile(existing: DirectoryStore) -> None:
    before = existing.load()
    minute = datetime.timedelta(minutes=1)
    _ensure_state(existing, replace(options(), minimum=minute, profile="modern"))
    after = existing.load()
    assert (after.minimum, after.maximum, after.tls_profile) == (minute, before.maximum, "modern")
    assert after.bundle_pem == before.bundle_pem, "the keys and roots stay"


def test_an_existing_state_is_not_rewritten_without_a_change(existing: DirectoryStore) -> None:
    version = existing.version()
    _ensure_state(existing, options())
    _ensure_state(existing, replace(options(), minimum=datetime.timedelta(minutes=5)))
    assert existing.version() == version


def test_the_trust_domain_of_an_existing_state_is_kept(
    existing: DirectoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    _ensure_state(existing, replace(options(), trust_domain="example.org"))
    assert existing.load().trust_domain == "cluster.local"
    assert "trust domain cluster.local is kept" in caplog.text


def test_bounds_that_contradict_each_other_are_refused(existing: DirectoryStore) -> None:
    with pytest.raises(ValueError, match="above the maximum"):
        _ensure_state(existing, replace(options(), minimum=datetime.timedelta(days=60)))
    assert existing.load().minimum == datetime.timedelta(minutes=5)
