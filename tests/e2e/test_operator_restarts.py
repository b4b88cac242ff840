"""Scenario 6: the operator killed (both replicas at once) while 20 annotated pods are created;
the CA pod killed.

After the operator comes back every pod has a valid Secret, Secrets written before the kill are
reused as they are (same serial), and no identity got two certificates. After the CA comes
back it has the same roots and still signs. (Only the leader killed, the standby taking over:
test_operator_failover.py.)
"""

from __future__ import annotations

import pytest

from harness.waiting import wait_until
from mtls_contract.marks import ANNOTATION_SERIAL
from mtls_operator.certs import Inspection
from support.cluster_api import PRODUCT_NAMESPACE, apply, kubectl
from support.operator_workloads import ca_status, idle_pod, rollout, secret_inspection

pytestmark = pytest.mark.alone("kills both operator replicas, then the CA")
PODS = 20


def _serials(namespace: str, names: list[str]) -> dict[str, str]:
    serials = {}
    for name in names:
        found = secret_inspection(f"{name}-tls", namespace)
        if found is not None:
            serials[name] = found[1]["metadata"]["annotations"][ANNOTATION_SERIAL]
    return serials


def test_operator_killed_while_pods_are_created(installed: str, namespace: str) -> None:
    names = [f"p{i:02d}" for i in range(PODS)]
    pods = [idle_pod(namespace, n) for n in names]
    apply(pods[: PODS // 2], namespace)
    wait_until("a first Secret", lambda: _serials(namespace, names[:1]), 60, interval=0.2)
    kubectl(
        "-n",
        PRODUCT_NAMESPACE,
        "delete",
        "pod",
        "-l",
        "app.kubernetes.io/name=hello-mtls-operator",
        "--grace-period=0",
        "--force",
        "--wait=false",
    )
    apply(pods[PODS // 2 :], namespace)
    before = _serials(namespace, names)
    assert before, "no Secret was written before the kill"

    rollout("hello-mtls-operator", PRODUCT_NAMESPACE)

    def all_written() -> dict[str, str] | None:
        serials = _serials(namespace, names)
        return serials if len(serials) == PODS else None

    after = wait_until("every pod's Secret", all_written, timeout=180, interval=2)
    for name in names:
        found = secret_inspection(f"{name}-tls", namespace)
        assert found is not None and found[0].problem is None, name
    assert {n: after[n] for n in before} == before, "a valid Secret was re-issued after restart"
    assert len(set(after.values())) == PODS
    wait_until(
        "all pods running",
        lambda: kubectl("-n", namespace, "get", "pods", "--no-headers").count("Running") == PODS,
        timeout=180,
        interval=2,
    )


def test_ca_killed_keeps_its_roots_and_signs(installed: str, namespace: str) -> None:
    roots = [root["fingerprint_sha256"] for root in ca_status()["roots"]]
    kubectl(
        "-n",
        PRODUCT_NAMESPACE,
        "delete",
        "pod",
        "-l",
        "app.kubernetes.io/name=hello-mtls-ca",
        "--grace-period=0",
        "--force",
        "--wait=false",
    )
    apply(idle_pod(namespace, "after"), namespace)
    rollout("hello-mtls-ca", PRODUCT_NAMESPACE)
    assert [root["fingerprint_sha256"] for root in ca_status()["roots"]] == roots

    def signed() -> Inspection | None:
        found = secret_inspection("after-tls", namespace)
        return found[0] if found is not None else None

    inspection = wait_until("a Secret signed after the CA restart", signed, 180, interval=2)
    assert inspection.problem is None
