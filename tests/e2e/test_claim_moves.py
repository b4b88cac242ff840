"""A pod's claim is fixed once the pod exists, and a status write is no way around the names
policy (ValidatingAdmissionPolicy hello-mtls-names, from the chart and k8s/).

The kubelet keeps mounting the Secret (or pod-certificate volume) a pod was created with; a claim
moved to another Secret or mode would leave that one unrenewed until it expires. Every row of the
shared table (tests/support/claim_moves.py, also run against the Python rule in
tests/unit/test_claim_moves.py) goes to the API server as an annotation update of a real pod
(server-side dry run). The API server stores the annotations of a ``pods/status`` update too, so
the policy judges those writes as well. Each scenario has its own namespace and touches nothing
of the installation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.waiting import wait_until
from mtls_contract.marks import ANNOTATION_INTERMEDIATE, ANNOTATION_NAME, ANNOTATION_SECRET
from support.admission import (
    annotation_update_error,
    names_policy_refusal,
    pod_certificates_enabled,
)
from support.claim_moves import CASES
from support.cluster_api import apply, kubectl, log
from support.operator_workloads import phase
from support.pods import pod


def _unscheduled(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    """A pod no node runs (its node selector matches none): admission is all it meets."""
    body = pod(name, annotations=annotations)
    body["spec"]["nodeSelector"] = {"hello-mtls.dev/e2e": "nowhere"}
    return body


@pytest.fixture
def enabled(installed: str) -> Iterator[bool]:
    yield pod_certificates_enabled()


def test_every_table_row_is_decided_as_the_operator_decides(namespace: str, enabled: bool) -> None:
    cases = [c for c in CASES if enabled or not c.pod_certificates]
    pods = []
    for index, case in enumerate(cases):
        before, _, _ = case.for_namespace(namespace)
        pods.append(_unscheduled(f"move-{index}", before))
    apply(pods, namespace)
    mismatches = []
    for index, case in enumerate(cases):
        before, after, error = case.for_namespace(namespace)
        change: dict[str, str | None] = {k: None for k in before if k not in after}
        change.update(after)
        got = annotation_update_error(f"move-{index}", namespace, change)
        if got != error:
            mismatches.append(f"{case.id}: expected {error!r}, got {got!r}")
    log(f"{len(cases)} claim moves: {len(mismatches)} mismatches")
    assert not mismatches, "\n".join(mismatches)


def test_a_running_pods_secret_cannot_move(namespace: str) -> None:
    """``kubectl annotate`` as a user types it, on a running pod that mounts its Secret."""
    apply(pod("moving", annotations={ANNOTATION_NAME: f"moving.{namespace}.svc"}), namespace)
    wait_until("the pod to run", lambda: phase("moving", namespace) == "Running", timeout=180)
    refused = names_policy_refusal(
        "annotate", "pod", "moving", "-n", namespace, f"{ANNOTATION_SECRET}=elsewhere-tls"
    )
    assert refused == (
        "hello-mtls.dev/secret: a pod cannot move from Secret 'moving-tls' to 'elsewhere-tls':"
        " the kubelet keeps mounting 'moving-tls', which would no longer be renewed; change the"
        " pod template of its workload (or recreate the pod) instead"
    )
    assert kubectl("get", "secret", "moving-tls", "-n", namespace, "-o", "name").strip()
    assert not kubectl(
        "get", "secret", "elsewhere-tls", "-n", namespace, "--ignore-not-found", "-o", "name"
    )


def test_a_status_write_cannot_claim_names_move_a_claim_or_set_the_intermediate(
    namespace: str, enabled: bool
) -> None:
    """What a node (or anyone granted pods/status) writes there is judged as any pod update."""
    apply(_unscheduled("web", {ANNOTATION_NAME: f"web.{namespace}.svc"}), namespace)

    def through_status(annotations: dict[str, str | None]) -> str | None:
        return annotation_update_error(
            "web", namespace, annotations, subresource="status", dry_run=False
        )

    assert through_status({ANNOTATION_NAME: "web.kube-system.svc"}) == (
        f"hello-mtls.dev/name: name 'web.kube-system.svc' is not under namespace '{namespace}'"
    )
    assert through_status({ANNOTATION_SECRET: "elsewhere-tls"}) == (
        "hello-mtls.dev/secret: a pod cannot move from Secret 'web-tls' to 'elsewhere-tls':"
        " the kubelet keeps mounting 'web-tls', which would no longer be renewed; change the"
        " pod template of its workload (or recreate the pod) instead"
    )
    if enabled:
        assert through_status({ANNOTATION_INTERMEDIATE: "ab" * 32}) == (
            "hello-mtls.dev/intermediate-sha256 is written by the hello-mtls operator only"
        )
    # What is not a claim still goes through, as a kubelet's status updates do.
    assert through_status({"example.com/note": "kept"}) is None
    annotations = kubectl(
        "get", "pod", "web", "-n", namespace, "-o", "jsonpath={.metadata.annotations}"
    )
    assert "example.com/note" in annotations and "elsewhere-tls" not in annotations
