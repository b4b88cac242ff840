"""Scenario 5: a root rotation across the cluster under traffic.

An administrator starts it (``hello-mtls-ca rotate-root --from idle``); the operator moves the
CA through both-trusted and new-signing back to idle, each step only after every managed Secret
shows the phase. The client keeps calling the server all along and must fail no request; the
final bundle holds only the new root.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from mtls_operator.certs import Inspection
from support.cluster_api import apply, wait_until
from support.operator_workloads import (
    ca_cli,
    ca_status,
    client_lines,
    client_pod,
    finished,
    phase,
    rollout,
    secret_inspection,
    server,
)

# Longer than the suite-wide 600 s pytest-timeout: 6 minutes of traffic, plus set-up.
pytestmark = pytest.mark.timeout(15 * 60)
REQUESTS = 720
INTERVAL = 0.5  # 6 minutes of traffic; the rotation takes about 3 (two 30 s graces plus work)


def test_root_rotation_under_traffic(installed: str, namespace: str) -> None:
    apply(server(namespace), namespace)
    rollout("hello", namespace)
    apply(client_pod(namespace, count=REQUESTS, interval=INTERVAL), namespace)
    wait_until("the client to run", lambda: phase("client", namespace) == "Running", timeout=120)
    before = ca_status()
    assert before["phase"] == "idle"
    old_root = before["roots"][0]["fingerprint_sha256"]

    ca_cli("rotate-root", "--from", "idle")

    def back_to_idle() -> dict[str, Any] | None:
        status = ca_status()
        return status if status["phase"] == "idle" else None

    seen = wait_until("the rotation back to idle", back_to_idle, timeout=8 * 60, interval=3)
    new_roots = [root["fingerprint_sha256"] for root in seen["roots"]]
    assert new_roots != [old_root] and old_root not in new_roots and len(new_roots) == 1

    final = wait_until(
        "the client to finish its requests",
        lambda: finished("client", namespace),
        timeout=10 * 60,
        interval=5,
    )
    failed = [line for line in client_lines(namespace) if line.get("error")]
    assert final == "Succeeded" and failed == [], failed[:3]

    for name in ("hello-tls", "client-tls"):

        def only_new_root(name: str = name) -> tuple[Inspection, dict[str, Any]] | None:
            found = secret_inspection(name, namespace)
            return found if found is not None and _roots(found[1]) == new_roots else None

        inspection, _ = wait_until(f"{name} with only the new root", only_new_root, timeout=120)
        assert inspection.problem is None
        assert inspection.intermediate_sha256 == seen["signing"]["intermediate_fingerprint_sha256"]


def _roots(secret: dict[str, object]) -> list[str]:
    data = secret["data"]
    assert isinstance(data, dict)
    bundle = base64.b64decode(data["ca.crt"])
    return [c.fingerprint(hashes.SHA256()).hex() for c in x509.load_pem_x509_certificates(bundle)]
