"""The other example stacks through renewals: the FastAPI server (uvicorn) and the httpx client.

As the renewal of test_operator_renewal_and_rotation.py, shorter: both get 2-minute certificates,
which the operator renews at 2/3 of their (backdated) lifetime, about once a minute; the client
makes a request every 0.5 s for 4 minutes and exits 1 if any failed. Neither restarts.
"""

from __future__ import annotations

import pytest

from support.cluster_api import apply
from support.operator_workloads import (
    client_pod,
    generations_without_failure,
    rollout,
    server,
)

# Longer than the suite-wide 600 s pytest-timeout: 4 minutes of traffic, plus set-up.
pytestmark = [pytest.mark.timeout(12 * 60), pytest.mark.long_running("4 minutes of renewals")]
REQUESTS = 480
INTERVAL = 0.5  # 480 x 0.5 s = 4 minutes of traffic


def test_fastapi_server_and_httpx_client_through_renewals(installed: str, namespace: str) -> None:
    apply(server(namespace, duration="2m", stack="fastapi"), namespace)
    rollout("hello", namespace)
    client = client_pod(
        namespace, count=REQUESTS, interval=INTERVAL, duration="2m", library="httpx"
    )
    apply(client, namespace)

    server_serials, client_serials = generations_without_failure(
        namespace, requests=REQUESTS, timeout=9 * 60
    )
    # 4 minutes of 2-minute certificates renewed about every minute: at least three
    # generations of each, every one used without a restart.
    assert len(server_serials) >= 3, server_serials
    assert len(client_serials) >= 3, client_serials
