"""``--state`` spellings: a directory or ``k8s:NAMESPACE/NAME``."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtls_ca.k8s_secrets import SecretStore
from mtls_ca.state import DirectoryStore
from mtls_ca.stores import open_store


def test_a_path_is_a_directory_store(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ca"))
    assert isinstance(store, DirectoryStore) and store.location == str(tmp_path / "ca")


def test_k8s_spec_is_a_secret_store() -> None:
    store = open_store("k8s:hello-mtls/hello-mtls-ca-state")
    assert isinstance(store, SecretStore)
    assert (store.namespace, store.name) == ("hello-mtls", "hello-mtls-ca-state")


@pytest.mark.parametrize("spec", ["k8s:", "k8s:ns", "k8s:/name", "k8s:ns/", "k8s:ns/a/b"])
def test_bad_k8s_specs(spec: str) -> None:
    with pytest.raises(ValueError) as info:
        open_store(spec)
    assert str(info.value) == f"state '{spec}' is not like k8s:NAMESPACE/SECRET-NAME"
