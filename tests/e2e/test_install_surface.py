"""The chart and k8s/: lint-clean and valid for the API server (``make lint`` checks that k8s/
is the chart rendered).

Runs in the e2e tier because it needs helm (the local cluster's cache has it; kind users have
it). The schema is checked twice: offline, against the OpenAPI document of the Kubernetes
version (``E2E_K8S_OPENAPI``: ``api/openapi-spec/swagger.json`` of the kubernetes repository at
that version; ``make e2e`` passes the local cluster's copy), and by the API server in
``KUBECONFIG`` (server-side dry run).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster_api import ROOT, kubectl
from support.openapi_schema import load_validator

HELM = os.environ.get("HELM", "helm")
CHART = str(ROOT / "charts" / "hello-mtls")
# Value sets that switch parts of the chart on and off.
VARIANTS: tuple[list[str], ...] = (
    [],
    ["--set", "operator.watchNamespaces={default,kube-public}", "--set", "staleWatch.enabled=true"],
    ["--set", "examples.enabled=false", "--set", "metrics.enabled=false"],
    [
        "--set",
        "networkPolicies.enabled=false",
        "--set",
        "operatorWritesPolicy.enabled=false",
        "--set",
        "ca.persistence.storageClass=fast",
    ],
    [
        "--set",
        "networkPolicies.operatorClientNamespaces={monitoring}",
        "--set",
        "staleWatch.enabled=true",
    ],
    ["--set", "ca.signers.replicas=2"],
    ["--set", "operator.replicas=1"],
    ["--set", "examples.metricsPort=9102"],
)


def helm(*args: str) -> str:
    done = subprocess.run(
        [HELM, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_chart_lints_clean() -> None:
    out = helm("lint", "--strict", CHART)
    assert "0 chart(s) failed" in out


def test_rendered_objects_match_the_api_schema_offline() -> None:
    path = os.environ.get("E2E_K8S_OPENAPI", "")
    if not path:
        message = "E2E_K8S_OPENAPI is not set (the swagger.json of the cluster's version)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    validate = load_validator(Path(path))
    rendered: list[dict[str, Any]] = []
    for values in VARIANTS:
        out = helm("template", "hello-mtls", CHART, "--namespace", "hello-mtls", *values)
        rendered += [doc for doc in yaml.safe_load_all(out) if doc]
    for manifest in sorted((ROOT / "k8s").glob("*.yaml")):
        rendered += [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]
    kinds = {doc["kind"] for doc in rendered}
    assert {"Namespace", "Deployment", "Service", "ServiceAccount", "Role", "ClusterRole"} <= kinds
    assert [error for doc in rendered for error in validate(doc)] == []
    broken = copy.deepcopy(next(doc for doc in rendered if doc["kind"] == "Deployment"))
    broken["spec"]["replicas"] = "one"
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Never"
    assert len(validate(broken)) == 2  # a wrong type and an unknown field are both caught


def test_rendered_objects_pass_the_api_servers_validation(installed: str) -> None:
    for values in VARIANTS:
        rendered = helm("template", "hello-mtls", CHART, "--namespace", installed, *values)
        out = kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered, timeout=120)
        assert "deployment.apps/hello-mtls-operator" in out
    broken = helm("template", "hello-mtls", CHART, "--namespace", installed).replace(
        "replicas: 1", "replicas: one", 1
    )
    done = subprocess.run(
        ["kubectl", "apply", "--dry-run=server", "-f", "-"],
        input=broken,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0  # the dry run does validate


def _rendered(*values: str) -> list[dict[str, Any]]:
    out = helm("template", "hello-mtls", CHART, "--namespace", "hello-mtls", *values)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_the_policies_are_on_by_default_and_each_has_a_switch() -> None:
    def policies(*values: str) -> set[tuple[str, str]]:
        kinds = {
            "NetworkPolicy",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
        }
        return {
            (doc["kind"], doc["metadata"]["name"])
            for doc in _rendered(*values)
            if doc["kind"] in kinds
        }

    admission = {
        switch: {(kind, name), (f"{kind}Binding", name)}
        for switch, kind, name in (
            ("operatorWritesPolicy", "ValidatingAdmissionPolicy", "hello-mtls-operator"),
            ("namesPolicy", "ValidatingAdmissionPolicy", "hello-mtls-names"),
            ("wiringPolicy", "MutatingAdmissionPolicy", "hello-mtls-wiring"),
        )
    }
    network = {
        ("NetworkPolicy", "hello-mtls-ca"),
        ("NetworkPolicy", "hello-mtls-ca-signer"),
        ("NetworkPolicy", "hello-mtls-operator"),
    }
    default = policies()
    assert default == network.union(*admission.values())
    assert default - policies("--set", "networkPolicies.enabled=false") == network
    for switch, owned in admission.items():
        assert default - policies("--set", f"{switch}.enabled=false") == owned

    def operator_ingress(*values: str) -> list[dict[str, Any]]:
        policy = next(
            doc
            for doc in _rendered(*values)
            if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] == "hello-mtls-operator"
        )
        return list(policy["spec"]["ingress"])

    assert operator_ingress() == []
    named = operator_ingress("--set", "networkPolicies.operatorClientNamespaces={monitoring}")
    selector = named[0]["from"][0]["namespaceSelector"]["matchExpressions"][0]
    assert selector["values"] == ["monitoring"]
    assert sorted(p["port"] for p in named[0]["ports"]) == [8080, 9090]


def test_the_operator_runs_two_replicas_kept_by_a_disruption_budget() -> None:
    def operator(*values: str) -> dict[str, dict[str, Any]]:
        return {
            doc["kind"]: doc
            for doc in _rendered(*values)
            if doc["metadata"]["name"] == "hello-mtls-operator"
            and doc["kind"] in {"Deployment", "PodDisruptionBudget"}
        }

    default = operator()
    deployment = default["Deployment"]["spec"]
    assert deployment["replicas"] == 2
    assert deployment["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    (spread,) = deployment["template"]["spec"]["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # one node: both still run
    assert default["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    single = operator("--set", "operator.replicas=1")
    assert set(single) == {"Deployment"}  # a budget of 1 of 1 would block every drain


def test_the_ca_state_is_a_claim_only_the_ca_mounts() -> None:
    docs = _rendered(
        "--set", "ca.persistence.storageClass=fast", "--set", "ca.persistence.size=2Gi"
    )
    claim = next(doc for doc in docs if doc["kind"] == "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "hello-mtls-ca-state"
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert (
        "storageClassName"
        not in next(doc for doc in _rendered() if doc["kind"] == "PersistentVolumeClaim")["spec"]
    )
    mounting = [
        doc["metadata"]["name"]
        for doc in docs
        if doc["kind"] == "Deployment"
        and any(
            (v.get("persistentVolumeClaim") or {}).get("claimName") == "hello-mtls-ca-state"
            for v in doc["spec"]["template"]["spec"].get("volumes", [])
        )
    ]
    assert mounting == ["hello-mtls-ca"]
    assert not [doc for doc in docs if doc["kind"] == "Secret"]


def test_the_alerts_and_the_dashboard_are_off_by_default_and_ship_their_files() -> None:
    def monitoring(*values: str) -> list[dict[str, Any]]:
        return [
            doc
            for doc in _rendered(*values)
            if doc["kind"] == "PrometheusRule"
            or doc["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
        ]

    assert monitoring() == []
    dashboard, rule = sorted(
        monitoring(
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.prometheusRule.labels.release=monitoring",
            "--set",
            "metrics.prometheusRule.runbookURL=https://runbooks.example/alerts.md",
            "--set",
            "metrics.dashboard.enabled=true",
        ),
        key=lambda doc: str(doc["kind"]),
    )
    files = ROOT / "charts" / "hello-mtls" / "files"
    alerts = (files / "alerts.yaml").read_text()
    expected = alerts.replace("docs/alerts.md#", "https://runbooks.example/alerts.md#")
    assert rule["metadata"]["labels"]["release"] == "monitoring"
    assert rule["spec"] == yaml.safe_load(expected)
    assert json.loads(dashboard["data"]["hello-mtls.json"]) == json.loads(
        (files / "dashboard.json").read_text()
    )
