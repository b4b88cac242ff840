"""Fixtures shared by the integration modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.ca_service import Service, init_with_provisioner
from mtls_operator.ca_client import CAClient


@pytest.fixture(scope="module")
def operator_ca_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CAClient]:
    """The operator's client of a real ``hello-mtls-ca serve`` (its provisioner credential),
    one CA per module."""
    root = tmp_path_factory.mktemp("operator-ca")
    init_with_provisioner(root)
    service = Service(root / "state", root / "serve.log")
    try:
        yield CAClient(service.url, root / "prov")
    finally:
        service.stop()
