"""What the integration modules share: CA states made by the real ``hello-mtls-ca``, a running
``hello-mtls-ca serve``, and the example servers, as httpx's conftest owns its servers.

Scopes follow what a test may change. ``ca_state``, ``server_dir`` and ``hello_servers`` are
per session (per worker under pytest-xdist): their tests only issue leaves and connect. ``pki``
and ``ca_service`` are per module: a module's tests rotate, revoke and audit that CA, which no
other module may see. A module that serves its CA with other arguments overrides
``serve_args``; one that needs more in its ``pki`` overrides ``pki`` and asks for this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from schemathesis.pytest.plugin import SchemathesisFunction

from harness import ca_cli
from harness.ca_service import Service, init_with_provisioner
from harness.processes import HelloServers
from mtls_operator.ca_client import CAClient


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each of schemathesis's items (one per API operation) a node id of its own.

    schemathesis 4.32 builds them without a callspec, and pytest 9.2 makes a node id of
    ``originalname`` and the callspec's parameters alone: every operation of test_ca_fuzz.py got
    the same id, and pytest-xdist, which hands out tests by node id, ran one operation of
    thirteen. The operation becomes the id's parameter, as in the item's name, with the ids of
    the test's own parameters after it (a parametrized fixture).
    """
    for item in items:
        if isinstance(item, SchemathesisFunction) and item.parent is not None:
            callspec = getattr(item, "callspec", None)
            params = [item.operation_label] + ([callspec.id] if callspec is not None else [])
            item._id = item.parent.id.child(item.originalname).with_params("-".join(params))


@pytest.fixture(scope="session")
def ca_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA state directory (``hello-mtls-ca init``) that tests issue leaves from."""
    state = tmp_path_factory.mktemp("ca") / "state"
    ca_cli.init(state)
    return state


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory, ca_state: Path) -> Path:
    """The shared servers' certificate directory: a ``localhost`` leaf of ``ca_state``."""
    directory = tmp_path_factory.mktemp("server")
    ca_cli.issue(ca_state, directory, "localhost")
    return directory


@pytest.fixture(scope="session")
def hello_servers(
    tmp_path_factory: pytest.TempPathFactory, server_dir: Path
) -> Iterator[HelloServers]:
    """The example server of each stack on ``server_dir``; it answers ``client.test`` and the
    SPIFFE ID ``spiffe://cluster.local/ns/shop/sa/web``, anyone else gets 403 with the reason."""
    allow = ("client.test", "spiffe://cluster.local/ns/shop/sa/web")
    with HelloServers(server_dir, tmp_path_factory.mktemp("logs"), allow) as servers:
        yield servers


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A module's own CA: its state in ``pki/state`` and, issued from it, the operator's
    credential (``prov``), an admin's (``alice``) and a workload's (``workload``, web.demo)."""
    root = tmp_path_factory.mktemp("pki")
    init_with_provisioner(root, admin="alice")
    workload = ("--name", "web.demo", "--namespace", "demo", "--out", str(root / "workload"))
    ca_cli.ca("issue", "--state", str(root / "state"), *workload)
    return root


@pytest.fixture(scope="module")
def serve_args() -> tuple[str, ...]:
    """The arguments ``ca_service`` adds to ``serve`` (none here; a module overrides them)."""
    return ()


@pytest.fixture(scope="module")
def ca_service(pki: Path, serve_args: tuple[str, ...]) -> Iterator[Service]:
    """``hello-mtls-ca serve`` of the module's ``pki``, its log in ``pki/serve.log``."""
    service = Service(pki / "state", pki / "serve.log", *serve_args)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def operator_ca_client(pki: Path, ca_service: Service) -> CAClient:
    """The operator's client of the module's ``ca_service`` (its provisioner credential)."""
    return CAClient(ca_service.url, pki / "prov")
