"""``serve`` creates a missing in-cluster state with the duration bounds it was given."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path

from mtls_ca.server import ServeOptions, _ensure_state
from mtls_ca.state import State, StateNotFound


class EmptyStore:
    location = "k8s:hello-mtls/hello-mtls-ca-state"

    def __init__(self) -> None:
        self.created: State | None = None

    def load(self) -> State:
        raise StateNotFound(self.location)

    def create(self, state: State) -> State:
        self.created = state
        return state


def options() -> ServeOptions:
    return ServeOptions(
        state="k8s:hello-mtls/hello-mtls-ca-state",
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
