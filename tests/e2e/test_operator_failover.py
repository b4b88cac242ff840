"""Scenario: the operator's leader dies while annotated pods are created.

Two operator replicas run; the Lease hello-mtls-operator names the one that works. Its pod is
force-deleted and new annotated pods are created at once. The standby, whose watches already
run, must take the Lease and give every pod exactly one valid Secret. The takeover time and
each pod's time to its Secret are logged; only generous bounds are asserted (timings are the
benchmarks' to hold; the target is 15 s).

Even a forced deletion gives the container SIGTERM and 2 s before SIGKILL (the kubelet's
minimum grace period), so the dying leader usually releases the Lease and the standby takes
it at its next poll (2 s). A leader that gets no SIGTERM (a lost node) is waited out: 10 to
12 s after its last renewal (the unit tests of `mtls_operator.leadership` cover that path).
The log says which happened.
"""

from __future__ import annotations

import datetime
import statistics
import time

import pytest

from harness.waiting import wait_until
from support.cluster_api import PRODUCT_NAMESPACE, apply, kubectl, log
from support.operator_workloads import (
    assert_each_served_once,
    burst_pods,
    lease_holder,
    managed_serials,
    operator_leader,
    operator_metric,
    operator_pods,
    rollout,
)

pytestmark = pytest.mark.alone("kills the operator's leader")
PODS = 200  # issue 21: the leader killed during a burst of 200 annotated pods
RUNNING = 10  # of them start; the others stay Pending (one node runs at most 110 pods)
LEADER = "hello_mtls_operator_leader"


def _pair() -> tuple[str, str] | None:
    """The operator's leader and its standby, once exactly two replicas run and one leads."""
    leader, replicas = operator_leader(), operator_pods()
    if leader not in replicas or len(replicas) != 2:
        return None
    (standby,) = (name for name in replicas if name != leader)
    return leader, standby


def test_the_standby_takes_over_when_the_leader_dies(installed: str, namespace: str) -> None:
    rollout("hello-mtls-operator", PRODUCT_NAMESPACE)
    leader, standby = wait_until("one of two operator replicas to hold the Lease", _pair, 120)
    # Both are Ready (the rollout waited for that); only the leader says it leads.
    assert (operator_metric(leader, LEADER), operator_metric(standby, LEADER)) == (1, 0)
    holder = lease_holder()

    pods = burst_pods(namespace, "f", PODS, running=RUNNING)
    names = [p["metadata"]["name"] for p in pods]
    killed_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    killed = time.monotonic()
    kubectl(
        "-n",
        PRODUCT_NAMESPACE,
        "delete",
        "pod",
        leader,
        "--grace-period=0",
        "--force",
        "--wait=false",
    )
    # Each pod's time to its Secret counts from the start of the creation (an upper bound: the
    # apply of 200 pods through the admission policies takes seconds, and overlaps the takeover).
    created = time.monotonic()
    apply(pods, namespace)
    log(
        f"killed leader {leader}; creating {PODS} pods took {time.monotonic() - created:.1f} s,"
        f" from {created - killed:.1f} s after the kill"
    )

    took_over: dict[str, float] = {}
    first_seen: dict[str, tuple[float, str]] = {}  # Secret name -> (when, serial)

    def done() -> bool:
        if not took_over:
            now, current = time.monotonic(), lease_holder()
            if current and current != holder:
                took_over[current] = now - killed
        now = time.monotonic()
        for name, serial in managed_serials(namespace).items():
            first_seen.setdefault(name, (now, serial))
        return bool(took_over) and len(first_seen) == PODS

    wait_until("the standby to take the Lease and every pod's Secret", done, 180, interval=0.5)
    ((new_holder, takeover),) = took_over.items()
    latencies = sorted(when - created for when, _ in first_seen.values())
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    # The standby reads a released Lease before it takes it, and logs that it saw no holder.
    since = f"--since-time={killed_at:%Y-%m-%dT%H:%M:%SZ}"
    standby_log = kubectl("-n", PRODUCT_NAMESPACE, "logs", standby, since)
    released = "is held by nobody" in standby_log
    how = "released by the dying leader" if released else "waited out (never released)"
    log(
        f"the Lease went from {holder} to {new_holder} {takeover:.1f} s after the kill"
        f" (target <= 15 s), {how}; pod -> Secret during the failover (from the start of the"
        f" creation): p50"
        f" {statistics.median(latencies):.1f} s, p99 {p99:.1f} s, max {latencies[-1]:.1f} s"
        f" ({PODS} pods)"
    )
    assert new_holder.rpartition("_")[0] == standby, "not the warm standby took over"
    assert takeover < 60
    assert latencies[-1] < 60

    # Exactly one valid Secret each, issued once: the serial first seen is the one kept, and no
    # pod got two Issued Events (the old leader may have issued the first few before it died).
    wait_until(
        f"the {RUNNING} schedulable pods running",
        lambda: kubectl("-n", namespace, "get", "pods", "--no-headers").count("Running") == RUNNING,
        timeout=180,
        interval=2,
    )
    assert set(first_seen) == {f"{name}-tls" for name in names}
    assert managed_serials(namespace).keys() == first_seen.keys()
    assert_each_served_once(namespace, names, {n: serial for n, (_, serial) in first_seen.items()})

    # A replacement pod joins as the standby: Ready, and not leading.
    rollout("hello-mtls-operator", PRODUCT_NAMESPACE)
    now_leading, replacement = wait_until("the operator's two replicas again", _pair, 120)
    assert now_leading == standby and replacement != leader
    assert (operator_metric(standby, LEADER), operator_metric(replacement, LEADER)) == (1, 0)
