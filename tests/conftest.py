"""Shared test configuration.

Tiers are chosen by path: ``make test`` runs ``tests/unit`` and ``tests/integration``;
``make e2e`` runs ``tests/e2e`` against the cluster in ``KUBECONFIG``. The e2e tier is opt-in
(``--e2e``, which ``make e2e`` passes): it installs the product on that cluster, so a bare
``pytest`` reports it as skipped. Under ``CI=true`` it always runs, and fails without a cluster.

Each tier has its own timeout (pytest-timeout), so a hung unit test fails in seconds rather than
after the bound a cluster scenario needs; a module or test that needs longer says so with its own
``pytest.mark.timeout``. The bounds are generous: they catch hangs, not slowness.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent
E2E = HERE / "e2e"
TIMEOUTS = {HERE / "unit": 30, HERE / "integration": 300, E2E: 900}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--e2e",
        action="store_true",
        help="run tests/e2e: install the product on the cluster in KUBECONFIG (make e2e)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = next((t for t in TIMEOUTS if item.path.is_relative_to(t)), None)
        if tier is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIMEOUTS[tier]))
    if config.getoption("--e2e") or os.environ.get("CI") == "true":
        return
    if os.environ.get("KUBECONFIG"):
        reason = "e2e is opt-in (it installs the product on the cluster in KUBECONFIG): --e2e"
    else:
        reason = "e2e needs a cluster: KUBECONFIG is not set (make e2e, or --e2e with KUBECONFIG)"
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.skip(reason=reason))
