"""The provisioner credential Secret against an in-memory fake of the Secrets API.

The fake keeps the API server's two rules that matter here: create of an existing name is 409,
replace with a stale resourceVersion is 409. The real API server is exercised by the e2e tier.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from mtls_ca.k8s_secrets import TLSSecret


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
        TLSSecret("ns", "cred").read()
