"""Scenario 4: 3-minute certificates renewed under continuous client traffic for 10 minutes.

The server and the client both get 3-minute certificates; the operator renews them at 2/3 of
their lifetime and nudges the kubelet; the apps reload without a restart. The client makes a
request every 0.5 s for 10 minutes and exits 1 if any failed.
"""

from __future__ import annotations

import pytest

from support.cluster_api import apply, wait_until
from support.operator_workloads import (
    client_lines,
    client_pod,
    finished,
    restart_counts,
    rollout,
    server,
)

# Longer than the suite-wide 600 s pytest-timeout: 10 minutes of traffic, plus set-up.
pytestmark = pytest.mark.timeout(20 * 60)
REQUESTS = 1200
INTERVAL = 0.5  # 1200 x 0.5 s = 10 minutes of traffic


def test_renewal_under_traffic_fails_no_request(installed: str, namespace: str) -> None:
    apply(server(namespace, duration="3m"), namespace)
    rollout("hello", namespace)
    apply(client_pod(namespace, count=REQUESTS, interval=INTERVAL, duration="3m"), namespace)

    final = wait_until(
        "the client to finish its requests",
        lambda: finished("client", namespace),
        timeout=15 * 60,
        interval=5,
    )
    lines = client_lines(namespace)
    failed = [line for line in lines if line.get("error")]
    assert final == "Succeeded", f"{len(failed)} failed requests, first: {failed[:3]}"
    assert len(lines) == REQUESTS and failed == []
    server_serials = list(dict.fromkeys(line["server_serial"] for line in lines))
    client_serials = list(dict.fromkeys(line["client_serial"] for line in lines))
    # 10 minutes of 3-minute certificates renewed at 2/3 of their (backdated) lifetime: at
    # least four generations of each, every one used without a restart.
    assert len(server_serials) >= 4, server_serials
    assert len(client_serials) >= 4, client_serials
    assert all(line["body"].startswith(f"Hello, client.{namespace}") for line in lines)
    counts = restart_counts(namespace)
    assert counts and set(counts) == {0}
