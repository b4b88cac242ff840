"""Scenario: `kubectl rollout restart` of each of the product's Deployments under traffic.

The CA signers, the CA's root holder and the operator are restarted one after the other, as an
upgrade or a node drain does, while the example client calls the example server every half
second and new annotated pods keep being created. Every request must succeed and every new pod
must get one valid Secret: a signer's rollout keeps one serving (``maxUnavailable: 0``), the
root holder's (``Recreate``) leaves the signers signing, and the operator's standby takes the
Lease from a replica that is stopped.

The time from each pod's creation to its Secret is logged per rollout (the figures in
docs/operator.md). It restarts the product's pods, so no other module may run beside it.
"""

from __future__ import annotations

import statistics
import time

import pytest

from harness.waiting import wait_until
from support.cluster_api import PRODUCT_NAMESPACE, apply, kubectl, kubectl_json, log
from support.operator_workloads import (
    assert_client_never_failed,
    client_lines,
    client_pod,
    managed_inspections,
    pending_pod,
    rollout,
    server,
)

pytestmark = pytest.mark.alone("restarts the CA and the operator")

DEPLOYMENTS = ("hello-mtls-ca-signer", "hello-mtls-ca", "hello-mtls-operator")
MOST_PODS = 30  # created per rollout at most, one at a time while it runs


def _rolled_out(deployment: str) -> bool:
    found = kubectl_json("-n", PRODUCT_NAMESPACE, "get", "deployment", deployment)
    spec, status = found["spec"], found.get("status", {})
    want = spec.get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= found["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and status.get("replicas", 0) == want
    )


def _pods_during_rollout(deployment: str, prefix: str, namespace: str) -> dict[str, float]:
    """Restart ``deployment`` and create annotated (Pending) pods one by one until its rollout
    is done; pod name → when it was created."""
    kubectl("-n", PRODUCT_NAMESPACE, "rollout", "restart", f"deploy/{deployment}")
    created: dict[str, float] = {}
    # The first pod goes in before the rollout can have finished; the rest while it runs.
    while len(created) < MOST_PODS and not (created and _rolled_out(deployment)):
        name = f"{prefix}{len(created):03d}"
        apply(pending_pod(namespace, name), namespace)
        created[name] = time.monotonic()
    rollout(deployment, PRODUCT_NAMESPACE, timeout=300)
    log(f"rollout restart of {deployment}: {len(created)} pods created while it ran")
    return created


def test_rollout_restarts_fail_no_request_and_serve_every_new_pod(
    installed: str, namespace: str
) -> None:
    for deployment in DEPLOYMENTS:
        rollout(deployment, PRODUCT_NAMESPACE, timeout=300)
    apply(server(namespace), namespace)
    rollout("hello", namespace, timeout=240)
    apply(client_pod(namespace, count=100_000, interval=0.5), namespace)
    wait_until("the client's first answers", lambda: len(client_lines(namespace)) >= 5, 180)

    for deployment, prefix in zip(DEPLOYMENTS, ("sig", "root", "op"), strict=True):
        created = _pods_during_rollout(deployment, prefix, namespace)
        names = list(created)
        first_seen: dict[str, float] = {}

        def served(names: list[str] = names, first_seen: dict[str, float] = first_seen) -> bool:
            now = time.monotonic()
            for name in managed_inspections(namespace):
                first_seen.setdefault(name, now)
            return all(f"{name}-tls" in first_seen for name in names)

        wait_until(f"a Secret for each pod created during {deployment}'s rollout", served, 240, 1)
        inspected = managed_inspections(namespace)
        for name in names:
            inspection, _ = inspected[f"{name}-tls"]
            assert inspection.problem is None, (name, inspection.problem)
            assert f"{name}.{namespace}.svc" in inspection.names
        # An upper bound: a Secret is seen at the first poll after it was written.
        waited = sorted(first_seen[f"{name}-tls"] - created[name] for name in names)
        log(
            f"{deployment} restarted: {len(names)} new pods served, pod -> Secret"
            f" median {statistics.median(waited):.1f} s, max {waited[-1]:.1f} s"
        )

    assert_client_never_failed(namespace, "three rollout restarts")
