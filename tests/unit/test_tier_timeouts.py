"""Each tier has its own pytest-timeout bound (tests/conftest.py), unless a test sets one."""

from __future__ import annotations

import pytest


def test_a_unit_test_gets_the_unit_tiers_bound(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("timeout")
    assert marker is not None and marker.args == (30,)


@pytest.mark.timeout(5)
def test_a_tests_own_bound_wins(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("timeout")
    assert marker is not None and marker.args == (5,)
