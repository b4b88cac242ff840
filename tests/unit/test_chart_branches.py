"""Each branch of the chart rendered by the real ``helm template`` (tests/support/chart.py) and
asserted on: the policies, the NetworkPolicies, pod-certificate mode, the monitoring objects and
the CA signers, on and off, so that a chart change is seen here in seconds rather than first in an
e2e pass on a cluster (which still proves what the rendered objects do)."""

from __future__ import annotations

import json

import yaml

from support.chart import CHART, Rendered, render, run_helm_template

POD_CERTIFICATE_ROLE = ("ClusterRole", "hello-mtls-pod-certificate-signer")


def test_the_defaults_render_the_policies_and_no_optional_part() -> None:
    chart = render()
    for kind, name in [
        ("ValidatingAdmissionPolicy", "hello-mtls-names"),
        ("ValidatingAdmissionPolicyBinding", "hello-mtls-names"),
        ("MutatingAdmissionPolicy", "hello-mtls-wiring"),
        ("MutatingAdmissionPolicyBinding", "hello-mtls-wiring"),
        ("ValidatingAdmissionPolicy", "hello-mtls-operator"),
        ("NetworkPolicy", "hello-mtls-ca"),
        ("NetworkPolicy", "hello-mtls-operator"),
        ("PodDisruptionBudget", "hello-mtls-operator"),
        ("Deployment", "hello-mtls-ca-signer"),
        ("PodDisruptionBudget", "hello-mtls-ca-signer"),
        ("NetworkPolicy", "hello-mtls-ca-signer"),
        ("Service", "hello-mtls-ca-root"),
    ]:
        chart.get(kind, name)
    # The admin credential of `hello-mtls revoke` and `rotate-root`: exec in the CA's pod only.
    admin = chart.get("Role", "hello-mtls-ca-admin")
    assert {(tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in admin["rules"]} == {
        (("deployments",), ("get",)),
        (("pods",), ("list",)),
        (("pods/exec",), ("create", "get")),
    }
    assert chart.find("RoleBinding", "hello-mtls-ca-admin") is None
    for kind, name in [
        POD_CERTIFICATE_ROLE,
        ("PrometheusRule", "hello-mtls"),
        ("ConfigMap", "hello-mtls-dashboard"),
        ("Namespace", "hello-mtls"),
    ]:
        assert chart.find(kind, name) is None, f"{kind} {name} rendered by default"


def test_names_policy_off_renders_neither_policy_nor_binding() -> None:
    chart = render("namesPolicy.enabled=false")
    assert chart.find("ValidatingAdmissionPolicy", "hello-mtls-names") is None
    assert chart.find("ValidatingAdmissionPolicyBinding", "hello-mtls-names") is None
    chart.get("MutatingAdmissionPolicy", "hello-mtls-wiring")


def test_wiring_policy_off_renders_neither_policy_nor_binding() -> None:
    chart = render("wiringPolicy.enabled=false")
    assert chart.find("MutatingAdmissionPolicy", "hello-mtls-wiring") is None
    assert chart.find("MutatingAdmissionPolicyBinding", "hello-mtls-wiring") is None
    chart.get("ValidatingAdmissionPolicy", "hello-mtls-names")


def test_operator_writes_policy_off() -> None:
    chart = render("operatorWritesPolicy.enabled=false")
    assert chart.find("ValidatingAdmissionPolicy", "hello-mtls-operator") is None


def test_pod_certificates_off_the_names_policy_refuses_the_mode() -> None:
    chart = render()
    names = chart.get("ValidatingAdmissionPolicy", "hello-mtls-names")
    variables = {v["name"]: v["expression"] for v in names["spec"]["variables"]}
    assert variables["podCertificates"] == "false"
    assert "HELLO_MTLS_POD_CERTIFICATE_SIGNER" not in chart.env("hello-mtls-operator", "operator")
    wiring = json.dumps(chart.get("MutatingAdmissionPolicy", "hello-mtls-wiring"))
    assert "podCertificate" not in wiring


def test_pod_certificates_on_for_one_signer_name() -> None:
    chart = render(
        "podCertificates.enabled=true",
        "podCertificates.signerName=example.com/pods",
        "podCertificates.refreshFraction=0.5",
    )
    env = chart.env("hello-mtls-operator", "operator")
    assert env["HELLO_MTLS_POD_CERTIFICATE_SIGNER"] == "example.com/pods"
    assert env["HELLO_MTLS_POD_CERTIFICATE_REFRESH_FRACTION"] == "0.5"
    role = chart.get(*POD_CERTIFICATE_ROLE)
    signers = next(r for r in role["rules"] if r["resources"] == ["signers"])
    assert signers["resourceNames"] == ["example.com/pods"]
    assert sorted(signers["verbs"]) == ["attest", "sign"]
    binding = chart.get("ClusterRoleBinding", "hello-mtls-pod-certificate-signer")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hello-mtls-operator", "namespace": "hello-mtls"}
    ]
    names = chart.get("ValidatingAdmissionPolicy", "hello-mtls-names")
    variables = {v["name"]: v["expression"] for v in names["spec"]["variables"]}
    assert variables["podCertificates"] == "true"
    assert "intermediateWritten" in variables
    wiring = json.dumps(chart.get("MutatingAdmissionPolicy", "hello-mtls-wiring"))
    assert "signerName: 'example.com/pods'" in wiring
    # Every key of the TLS policy ConfigMap (the policy, the CRL, the federated bundles): no
    # items, so a key the operator adds later reaches the pods without a new wiring.
    assert "name: 'hello-mtls-tls-policy'}}" in wiring
    assert "items" not in wiring
    writes = json.dumps(chart.get("ValidatingAdmissionPolicy", "hello-mtls-operator"))
    assert "hello-mtls.dev/intermediate-sha256" in writes


def test_pod_certificates_without_a_refresh_fraction_leave_the_operator_its_default() -> None:
    chart = render("podCertificates.enabled=true")
    env = chart.env("hello-mtls-operator", "operator")
    assert env["HELLO_MTLS_POD_CERTIFICATE_SIGNER"] == "hello-mtls.dev/pod-certificate"
    assert "HELLO_MTLS_POD_CERTIFICATE_REFRESH_FRACTION" not in env


def _ingress_by_port(chart: Rendered, policy: str) -> dict[int, object]:
    ingress = chart.get("NetworkPolicy", policy)["spec"]["ingress"]
    return {rule["ports"][0]["port"]: rule.get("from") for rule in ingress}


def _pods(name: str) -> list[dict[str, object]]:
    return [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}]


def test_network_policies_admit_the_operator_alone_to_the_signing_port() -> None:
    chart = render()  # two CA signers by default
    assert _ingress_by_port(chart, "hello-mtls-ca-signer") == {
        8443: None,
        8444: _pods("hello-mtls-operator"),
    }
    assert _ingress_by_port(chart, "hello-mtls-ca") == {
        8443: _pods("hello-mtls-operator") + _pods("hello-mtls-ca-signer"),
        8444: _pods("hello-mtls-operator"),
        8445: _pods("hello-mtls-ca-signer"),
    }
    alone = render("ca.signers.replicas=0")
    assert alone.find("NetworkPolicy", "hello-mtls-ca-signer") is None
    assert _ingress_by_port(alone, "hello-mtls-ca") == {
        8443: None,
        8444: _pods("hello-mtls-operator"),
    }


def test_with_signers_the_root_holders_read_only_port_admits_the_listed_namespaces() -> None:
    # The signers serve the read-only endpoints to the cluster; the root holder's port is for
    # the product's own pods and Prometheus (issue 21).
    chart = render("networkPolicies.operatorClientNamespaces={monitoring,ops}")
    names = {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": ["monitoring", "ops"],
    }
    monitoring = {"namespaceSelector": {"matchExpressions": [names]}}
    assert _ingress_by_port(chart, "hello-mtls-ca")[8443] == [
        *_pods("hello-mtls-operator"),
        *_pods("hello-mtls-ca-signer"),
        monitoring,
    ]
    assert _ingress_by_port(chart, "hello-mtls-ca-signer")[8443] is None


def test_network_policies_admit_no_namespace_to_the_operator_by_default() -> None:
    policy = render().get("NetworkPolicy", "hello-mtls-operator")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == []


def test_network_policies_admit_the_listed_namespaces_to_health_and_metrics() -> None:
    chart = render("networkPolicies.operatorClientNamespaces={monitoring}", "metrics.port=9100")
    (rule,) = chart.get("NetworkPolicy", "hello-mtls-operator")["spec"]["ingress"]
    (expression,) = rule["from"][0]["namespaceSelector"]["matchExpressions"]
    assert expression["values"] == ["monitoring"]
    assert [p["port"] for p in rule["ports"]] == [8080, 9100]
    no_metrics = render(
        "networkPolicies.operatorClientNamespaces={monitoring}", "metrics.enabled=false"
    )
    (rule,) = no_metrics.get("NetworkPolicy", "hello-mtls-operator")["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [8080]


def test_network_policies_off() -> None:
    chart = render("networkPolicies.enabled=false", "ca.signers.replicas=2")
    assert [o for o in chart.objects if o["kind"] == "NetworkPolicy"] == []


def test_metrics_off_the_operator_serves_and_declares_none() -> None:
    ports = render("metrics.enabled=false").container("hello-mtls-operator", "operator")["ports"]
    assert [p["name"] for p in ports] == ["healthz"]


def test_prometheus_rule_holds_the_alerts_with_the_runbook_url_and_labels() -> None:
    chart = render(
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.labels.release=kps",
        "metrics.prometheusRule.runbookURL=https://wiki.example/alerts",
    )
    rule = chart.get("PrometheusRule", "hello-mtls")
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["metadata"]["namespace"] == "hello-mtls"
    alerts = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    rendered = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    expected = [r for group in alerts["groups"] for r in group["rules"]]
    assert [r["alert"] for r in rendered] == [r["alert"] for r in expected]
    for alert in rendered:
        assert alert["annotations"]["runbook_url"].startswith("https://wiki.example/alerts#")


def test_prometheus_rule_for_durations_come_from_values() -> None:
    chart = render(
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.for.HelloMTLSCADown=10s",
        "metrics.prometheusRule.for.HelloMTLSStaleCertificate=90s",
    )
    rule = chart.get("PrometheusRule", "hello-mtls")
    durations = {r["alert"]: r["for"] for g in rule["spec"]["groups"] for r in g["rules"]}
    alerts = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    defaults = {r["alert"]: r["for"] for g in alerts["groups"] for r in g["rules"]}
    assert durations == {
        **defaults,
        "HelloMTLSCADown": "10s",
        "HelloMTLSStaleCertificate": "90s",
    }


def test_a_for_duration_of_no_alert_fails_the_render() -> None:
    result = run_helm_template(
        "metrics.prometheusRule.enabled=true", "metrics.prometheusRule.for.HelloMTLSCaDown=1m"
    )
    assert result.returncode != 0
    assert '"HelloMTLSCaDown" is none of the chart\'s alerts' in result.stderr


def test_dashboard_configmap_in_the_namespace_the_sidecar_watches() -> None:
    chart = render("metrics.dashboard.enabled=true", "metrics.dashboard.namespace=monitoring")
    config_map = chart.get("ConfigMap", "hello-mtls-dashboard")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    assert json.loads(config_map["data"]["hello-mtls.json"]) == dashboard
    default = render("metrics.dashboard.enabled=true").get("ConfigMap", "hello-mtls-dashboard")
    assert default["metadata"]["namespace"] == "hello-mtls"


def test_two_ca_signers_get_their_deployment_budget_and_policies() -> None:
    chart = render("ca.signers.replicas=2")
    assert chart.get("Deployment", "hello-mtls-ca-signer")["spec"]["replicas"] == 2
    chart.get("PodDisruptionBudget", "hello-mtls-ca-signer")
    chart.get("NetworkPolicy", "hello-mtls-ca-signer")
    chart.get("Service", "hello-mtls-ca-root")
    ingress = chart.get("NetworkPolicy", "hello-mtls-ca")["spec"]["ingress"]
    material = next(rule for rule in ingress if rule["ports"][0]["port"] == 8445)
    assert material["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "hello-mtls-ca-signer"}}}
    ]
    assert "HELLO_MTLS_CA_ROOT_URL" in chart.env("hello-mtls-operator", "operator")


def test_one_ca_signer_has_no_budget_that_would_block_a_drain() -> None:
    chart = render("ca.signers.replicas=1")
    chart.get("Deployment", "hello-mtls-ca-signer")
    assert chart.find("PodDisruptionBudget", "hello-mtls-ca-signer") is None


def test_one_operator_replica_has_no_budget() -> None:
    assert render("operator.replicas=1").find("PodDisruptionBudget", "hello-mtls-operator") is None


def test_create_namespace_renders_the_namespace() -> None:
    render("createNamespace=true").get("Namespace", "hello-mtls")


def test_federated_trust_domains_reach_the_operator_as_json() -> None:
    entries = [
        {
            "trustDomain": "other.example",
            "bundleEndpointURL": "https://hello-mtls-ca.other.svc:8443/spiffe-bundle",
            "profile": "https_spiffe",
            "endpointSPIFFEID": "spiffe://other.example/bundle-endpoint",
            "bundle": "-----BEGIN CERTIFICATE-----",
        }
    ]
    result = run_helm_template(json_values={"federation.trustDomains": entries})
    assert result.returncode == 0, result.stderr
    chart = Rendered([o for o in yaml.safe_load_all(result.stdout) if o])
    env = chart.env("hello-mtls-operator", "operator")
    assert json.loads(env["HELLO_MTLS_FEDERATION"]) == entries
    assert "HELLO_MTLS_FEDERATION" not in render().env("hello-mtls-operator", "operator")
