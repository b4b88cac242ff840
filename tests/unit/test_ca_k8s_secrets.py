"""The Secret-backed CA state against an in-memory fake of the Secrets API.

The fake keeps the API server's two rules that matter here: create of an existing name is 409,
replace with a stale resourceVersion is 409. The real API server is exercised by the e2e tier.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from mtls_ca.authority import CA
from mtls_ca.k8s_secrets import DATA_KEY, SecretStore, TLSSecret
from mtls_ca.state import State, StateNotFound


class FakeSecrets:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], Any] = {}
        self.version = 0
        self.before_replace: Callable[[], object] | None = None

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        if (namespace, name) not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.secrets[namespace, name])

    def create_namespaced_secret(self, namespace: str, body: Any) -> Any:
        if (namespace, body.metadata.name) in self.secrets:
            raise ApiException(status=409, reason="AlreadyExists")
        self.version += 1
        body = copy.deepcopy(body)
        body.metadata.resource_version = str(self.version)
        self.secrets[namespace, body.metadata.name] = body
        return body

    def replace_namespaced_secret(self, name: str, namespace: str, body: Any) -> Any:
        if self.before_replace is not None:
            hook, self.before_replace = self.before_replace, None
            hook()
        current = self.secrets[namespace, name]
        if body.metadata.resource_version != current.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        self.version += 1
        body = copy.deepcopy(body)
        body.metadata.resource_version = str(self.version)
        self.secrets[namespace, name] = body
        return body


@pytest.fixture(scope="module")
def states() -> tuple[State, State]:
    return State(generations=(CA.create(),)), State(generations=(CA.create(),))


def test_create_if_absent_two_replicas_end_with_one_ca(states: tuple[State, State]) -> None:
    api = FakeSecrets()
    first, second = SecretStore("ns", "ca", api), SecretStore("ns", "ca", api)
    with pytest.raises(StateNotFound, match="^no CA state in Secret k8s:ns/ca$"):
        first.load()
    # Both found nothing; both create; the second loses with 409 and adopts the first's CA.
    won = first.create(states[0])
    adopted = second.create(states[1])
    assert adopted.status() == won.status() == states[0].status()
    assert second.load().status() == states[0].status()
    secret = api.secrets["ns", "ca"]
    assert secret.type == "Opaque" and set(secret.data) == {DATA_KEY}


def test_update_retries_on_a_conflict_and_loses_nothing(states: tuple[State, State]) -> None:
    api = FakeSecrets()
    store, other = SecretStore("ns", "ca", api), SecretStore("ns", "ca", api)
    store.create(states[0])
    version = store.version()
    # Someone else switches the profile between our read and our replace.
    api.before_replace = lambda: other.update(lambda s: replace(s, tls_profile="modern"))
    calls = []

    def rotate(state: State) -> State:
        calls.append(state.tls_profile)
        return state.rotated(expected="idle")

    new = store.update(rotate)
    assert calls == ["intermediate", "modern"]  # retried on fresh data
    loaded = store.load()
    assert (loaded.phase, loaded.tls_profile) == ("both-trusted", "modern")
    assert new.status() == loaded.status()
    assert store.version() != version


def test_update_gives_up_after_endless_conflicts(states: tuple[State, State]) -> None:
    api = FakeSecrets()
    store = SecretStore("ns", "ca", api)
    store.create(states[0])

    def always_conflict(name: str, namespace: str, body: Any) -> Any:
        raise ApiException(status=409, reason="Conflict")

    api.replace_namespaced_secret = always_conflict  # type: ignore[method-assign]
    with pytest.raises(OSError, match="changed during each of 10 updates"):
        store.update(lambda s: s)


def test_api_errors_become_one_line_errors() -> None:
    class Forbidden(FakeSecrets):
        def read_namespaced_secret(self, name: str, namespace: str) -> Any:
            raise ApiException(status=403, reason="Forbidden")

    with pytest.raises(OSError, match="^cannot read Secret k8s:ns/ca: 403 Forbidden$"):
        SecretStore("ns", "ca", Forbidden()).load()


def test_a_secret_without_state_is_an_error(states: tuple[State, State]) -> None:
    api = FakeSecrets()
    store = SecretStore("ns", "ca", api)
    store.create(states[0])
    api.secrets["ns", "ca"].data = {}
    with pytest.raises(ValueError, match="^Secret k8s:ns/ca has no 'state.json' key$"):
        store.load()


def test_tls_secret_create_then_replace() -> None:
    api = FakeSecrets()
    secret = TLSSecret("ns", "cred", api)
    assert secret.read() is None
    assert secret.write({"tls.crt": b"one", "tls.key": b"k"})
    assert api.secrets["ns", "cred"].type == "kubernetes.io/tls"
    assert secret.read() == {"tls.crt": b"one", "tls.key": b"k"}
    assert secret.write({"tls.crt": b"two", "tls.key": b"k"})
    assert secret.read() == {"tls.crt": b"two", "tls.key": b"k"}


def test_tls_secret_lost_race_is_not_an_error() -> None:
    api = FakeSecrets()
    secret = TLSSecret("ns", "cred", api)
    secret.write({"tls.crt": b"one"})
    api.before_replace = lambda: TLSSecret("ns", "cred", api).write({"tls.crt": b"theirs"})
    assert secret.write({"tls.crt": b"mine"}) is False
    assert secret.read() == {"tls.crt": b"theirs"}


def test_no_kubernetes_configuration_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(OSError, match="^no Kubernetes configuration \\(not in a pod, KUBECONFIG: "):
        SecretStore("ns", "ca").load()
