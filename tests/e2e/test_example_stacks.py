"""The other example stacks through renewals: the FastAPI server (uvicorn) and the httpx client.

As the renewal of test_operator_renewal_and_rotation.py, shorter: both get 2-minute certificates,
which the operator renews at 2/3 of their (backdated) lifetime, about once a minute; the client
makes a request every 0.5 s for 4 minutes and exits 1 if any failed. Neither restarts.
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

# Longer than the suite-wide 600 s pytest-timeout: 4 minutes of traffic, plus set-up.
pytestmark = pytest.mark.timeout(12 * 60)
REQUESTS = 480
INTERVAL = 0.5  # 480 x 0.5 s = 4 minutes of traffic


def test_fastapi_server_and_httpx_client_through_renewals(installed: str, namespace: str) -> None:
    apply(server(namespace, duration="2m", stack="fastapi"), namespace)
    rollout("hello", namespace)
    client = client_pod(
        namespace, count=REQUESTS, interval=INTERVAL, duration="2m", library="httpx"
    )
    apply(client, namespace)

    final = wait_until(
        "the client to finish its requests",
        lambda: finished("client", namespace),
        timeout=9 * 60,
        interval=5,
    )
    lines = client_lines(namespace)
    failed = [line for line in lines if line.get("error")]
    assert final == "Succeeded", f"{len(failed)} failed requests, first: {failed[:3]}"
    assert len(lines) == REQUESTS and failed == []
    server_serials = list(dict.fromkeys(line["server_serial"] for line in lines))
    client_serials = list(dict.fromkeys(line["client_serial"] for line in lines))
    # 4 minutes of 2-minute certificates renewed about every minute: at least three
    # generations of each, every one used without a restart.
    assert len(server_serials) >= 3, server_serials
    assert len(client_serials) >= 3, client_serials
    assert all(line["body"].startswith(f"Hello, client.{namespace}") for line in lines)
    counts = restart_counts(namespace)
    assert counts and set(counts) == {0}
