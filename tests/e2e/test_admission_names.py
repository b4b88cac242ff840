"""The API server refuses bad hello-mtls annotations at admission (ValidatingAdmissionPolicy
hello-mtls-names from the chart and k8s/), with the operator's own messages.

Every row of the shared table (tests/support/name_cases.py, also run against the Python rules in
tests/unit/test_name_cases.py) goes to the API server as a pod and as a Deployment, by
server-side dry run; then real ``kubectl apply`` of Deployments and the other workload kinds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.waiting import wait_until
from mtls_contract.marks import ANNOTATION_INTERMEDIATE
from support.admission import admission_error, pod_certificates_enabled
from support.cluster_api import kubectl, log
from support.name_cases import ALLOWED_NAMESPACE, CASES
from support.pods import deployment, pod

NAME = "hello-mtls.dev/name"
DURATION = "hello-mtls.dev/duration"
MODE = "hello-mtls.dev/mode"


def _template_of(kind: str, api: str, *, job: bool = False) -> Callable[[dict[str, Any]], Any]:
    def build(annotated_pod: dict[str, Any]) -> dict[str, Any]:
        name = annotated_pod["metadata"]["name"]
        spec = copy.deepcopy(annotated_pod["spec"])
        spec["restartPolicy"] = "Never" if job else "Always"
        template = {
            "metadata": {
                "labels": {"app": name},
                "annotations": annotated_pod["metadata"]["annotations"],
            },
            "spec": spec,
        }
        body: dict[str, Any] = {"template": template}
        if not job:
            body["selector"] = {"matchLabels": {"app": name}}
        if kind == "StatefulSet":
            body["serviceName"] = name
        if kind == "CronJob":
            body = {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": body}}
        return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": body}

    return build


WORKLOADS = {
    "Deployment": _template_of("Deployment", "apps/v1"),
    "StatefulSet": _template_of("StatefulSet", "apps/v1"),
    "DaemonSet": _template_of("DaemonSet", "apps/v1"),
    "ReplicaSet": _template_of("ReplicaSet", "apps/v1"),
    "Job": _template_of("Job", "batch/v1", job=True),
    "CronJob": _template_of("CronJob", "batch/v1", job=True),
}


@pytest.fixture
def allowed_namespace(installed: str) -> Iterator[str]:
    """The namespace the e2e install gives extra names and networks (name_cases)."""
    # A fixed name (the install's values name it): wait out a previous run's namespace first.
    kubectl("delete", "namespace", ALLOWED_NAMESPACE, "--ignore-not-found", timeout=180)
    kubectl("create", "namespace", ALLOWED_NAMESPACE)
    yield ALLOWED_NAMESPACE
    kubectl("delete", "namespace", ALLOWED_NAMESPACE, "--wait=false", check=False)


@pytest.fixture
def named_namespaces(installed: str) -> Iterator[None]:
    """The namespaces rows name for themselves (``local``, ``corp``, ``arpa``...): made where
    missing and deleted afterwards; one that exists already is used as it is and kept (the rows
    only dry-run in it)."""
    made = []
    for name in sorted({c.namespace for c in CASES if c.namespace}):

        def settled(name: str = name) -> str | None:
            phase = kubectl(
                "get", "namespace", name, "--ignore-not-found", "-o", "jsonpath={.status.phase}"
            ).strip()
            return None if phase == "Terminating" else phase or "absent"

        # A previous run's namespace may still be terminating: wait it out.
        if wait_until(f"namespace {name} gone or active", settled, timeout=180) == "absent":
            kubectl("create", "namespace", name)
            made.append(name)
    yield
    for name in made:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_every_table_row_is_decided_as_the_operator_decides(
    namespace: str, allowed_namespace: str, named_namespaces: None
) -> None:
    enabled = pod_certificates_enabled()
    cases = [c for c in CASES if c.pod_certificates in (None, enabled)]
    mismatches = []
    for case in cases:
        ns = case.run_in(namespace)
        annotations, error = case.for_namespace(ns)
        expected = error if case.policy else None
        for kind, build in (("Pod", lambda p: p), ("Deployment", WORKLOADS["Deployment"])):
            got = admission_error(build(pod(case.id, annotations=annotations)), ns)
            if got != expected:
                mismatches.append(f"{case.id} ({kind}): expected {expected!r}, got {got!r}")
    log(
        f"{len(cases)} rows x (pod, Deployment): {len(mismatches)} mismatches"
        f" ({len(CASES) - len(cases)} rows left out: they hold only with podCertificates.enabled"
        f" {'off' if enabled else 'on'})"
    )
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {NAME: "thief.kube-system.svc"},
            "hello-mtls.dev/name: name 'thief.kube-system.svc' is not under namespace '{ns}'",
        ),
        ({NAME: "*.{ns}.svc"}, "hello-mtls.dev/name: wildcard name '*.{ns}.svc' is not allowed"),
        (
            {NAME: "web.{ns}.svc", DURATION: "forever"},
            "hello-mtls.dev/duration: duration 'forever' is not like 90m, 24h, 1h30m or 30s",
        ),
    ],
    ids=["other-namespace", "wildcard", "bad-duration"],
)
def test_kubectl_apply_of_a_bad_deployment_fails_with_the_reason(
    namespace: str, annotations: dict[str, str], message: str
) -> None:
    annotations = {k: v.replace("{ns}", namespace) for k, v in annotations.items()}
    bad = deployment("web", replicas=1, annotations=annotations, secret="web-tls")
    assert admission_error(bad, namespace, dry_run=False) == message.replace("{ns}", namespace)
    assert not kubectl("get", "deployments", "-n", namespace, "-o", "name").strip()

    good = deployment(
        "web", replicas=1, annotations={NAME: f"web.{namespace}.svc"}, secret="web-tls"
    )
    assert admission_error(good, namespace, dry_run=False) is None
    assert kubectl("get", "deployments", "-n", namespace, "-o", "name").split() == [
        "deployment.apps/web"
    ]


def test_every_workload_kind_is_policed(namespace: str) -> None:
    for kind, build in sorted(WORKLOADS.items()):
        bad = build(pod("web", annotations={NAME: "web.other.svc"}))
        assert admission_error(bad, namespace) == (
            f"hello-mtls.dev/name: name 'web.other.svc' is not under namespace '{namespace}'"
        ), kind
        good = build(pod("web", annotations={NAME: f"web.{namespace}.svc"}))
        assert admission_error(good, namespace) is None, kind


def test_updates_are_policed_only_when_the_rules_annotations_change(namespace: str) -> None:
    good = WORKLOADS["Deployment"](pod("web", annotations={NAME: f"web.{namespace}.svc"}))
    assert admission_error(good, namespace, dry_run=False) is None
    bad = copy.deepcopy(good)
    bad["spec"]["template"]["metadata"]["annotations"][NAME] = "web.other.svc"
    assert admission_error(bad, namespace, dry_run=False) == (
        f"hello-mtls.dev/name: name 'web.other.svc' is not under namespace '{namespace}'"
    )


def test_a_changed_mode_is_policed_on_update(namespace: str) -> None:
    good = WORKLOADS["Deployment"](pod("web", annotations={NAME: f"web.{namespace}.svc"}))
    assert admission_error(good, namespace, dry_run=False) is None
    bad = copy.deepcopy(good)
    bad["spec"]["template"]["metadata"]["annotations"][MODE] = "csi"
    assert admission_error(bad, namespace, dry_run=False) == (
        "hello-mtls.dev/mode: 'csi' is not a mode; use secret or pod-certificate"
    )


def test_only_the_operator_writes_the_intermediate_annotation(namespace: str) -> None:
    """The root rotation trusts it (docs/operator.md#root-rotation); the operator's own write
    is admitted by policy hello-mtls-operator (test_least_privilege)."""
    if not pod_certificates_enabled():
        pytest.skip("the install has podCertificates.enabled off (k8s/ renders the defaults)")
    refused = "hello-mtls.dev/intermediate-sha256 is written by the hello-mtls operator only"
    plain = pod("web", annotations={NAME: f"web.{namespace}.svc"})
    annotated = copy.deepcopy(plain)
    annotated["metadata"]["annotations"][ANNOTATION_INTERMEDIATE] = "ab" * 32
    assert admission_error(annotated, namespace) == refused
    assert admission_error(WORKLOADS["Deployment"](annotated), namespace) == refused
    assert admission_error(plain, namespace, dry_run=False) is None
    assert admission_error(annotated, namespace, dry_run=False) == refused  # an update


@pytest.mark.parametrize("exempt", ["kube-system", "installed"])
def test_kube_system_and_the_release_namespace_are_not_policed(installed: str, exempt: str) -> None:
    target = installed if exempt == "installed" else exempt
    bad = pod("hello-mtls-admission-probe", annotations={NAME: "web.other.svc"})
    assert admission_error(bad, target) is None


def test_the_policy_is_installed_and_bound(installed: str) -> None:
    policy = json.loads(
        kubectl("get", "validatingadmissionpolicy", "hello-mtls-names", "-o", "json")
    )
    assert not policy.get("status", {}).get("typeChecking", {}).get("expressionWarnings"), policy[
        "status"
    ]
    binding = json.loads(
        kubectl("get", "validatingadmissionpolicybinding", "hello-mtls-names", "-o", "json")
    )
    assert binding["spec"]["validationActions"] == ["Deny"]
