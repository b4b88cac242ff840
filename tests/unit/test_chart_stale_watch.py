"""The chart's stale-certificate watch (``staleWatch``), rendered by the real ``helm template``:
off by default; on, a Deployment of the CA image whose role lists pods and creates Events only,
and NetworkPolicies that let it reach the metrics ports it reads and the API server, and the
operator's metrics port admit it. What it does on the cluster: tests/e2e/test_alerts.py."""

from __future__ import annotations

from support.chart import NAMESPACE, render, run_helm_template

WATCH = "hello-mtls-stale-watch"


def test_off_by_default() -> None:
    chart = render()
    assert [n for n in chart.names() if "stale-watch" in n] == []
    assert chart.get("NetworkPolicy", "hello-mtls-operator")["spec"]["ingress"] == []


def test_on_it_runs_the_ca_image_with_its_values() -> None:
    chart = render(
        "staleWatch.enabled=true",
        "staleWatch.staleAfter=300",
        "staleWatch.interval=30",
        "staleWatch.readsPerSecond=3",
        "staleWatch.metricsPorts={9102,9200}",
        "examples.metricsPort=9300",
        "images.tag=v1",
    )
    container = chart.container(WATCH, "stale-watch")
    assert container["image"] == "hello-mtls/ca:v1"
    assert container["args"] == [
        "hello-mtls-stale-watch",
        f"--operator-namespace={NAMESPACE}",
        "--stale-after=300",
        "--interval=30",
        "--reads-per-second=3",
        "--metrics-port=9091",
        "--read-ports=9090,9102,9200,9300",
    ]
    spec = chart.get("Deployment", WATCH)["spec"]
    assert spec["replicas"] == 1
    assert spec["template"]["spec"]["serviceAccountName"] == WATCH
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    chart.get("ServiceAccount", WATCH)


def test_its_role_lists_pods_and_creates_events_only() -> None:
    chart = render("staleWatch.enabled=true")
    role = chart.get("ClusterRole", WATCH)
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    binding = chart.get("ClusterRoleBinding", WATCH)
    assert binding["roleRef"]["name"] == WATCH
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": WATCH, "namespace": NAMESPACE}
    ]


def test_with_watched_namespaces_it_is_bound_and_reads_there_and_in_its_own() -> None:
    chart = render("staleWatch.enabled=true", "operator.watchNamespaces={shop,dev}")
    assert chart.find("ClusterRoleBinding", WATCH) is None
    bound = sorted(
        o["metadata"]["namespace"]
        for o in chart.objects
        if o["kind"] == "RoleBinding" and o["metadata"]["name"] == WATCH
    )
    assert bound == sorted(["shop", "dev", NAMESPACE])
    args = chart.container(WATCH, "stale-watch")["args"]
    assert [a for a in args if a.startswith("--namespace=")] == [
        "--namespace=shop",
        "--namespace=dev",
    ]


def test_its_network_policy_reaches_the_metrics_ports_and_the_api_server_only() -> None:
    chart = render("staleWatch.enabled=true", "staleWatch.metricsPorts={9102}", "metrics.port=9100")
    policy = chart.get("NetworkPolicy", WATCH)["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": WATCH}}
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == []
    pods, api_server = policy["egress"]
    assert pods["to"] == [{"namespaceSelector": {}}]
    assert [p["port"] for p in pods["ports"]] == [9100, 9102]
    assert "to" not in api_server
    assert [p["port"] for p in api_server["ports"]] == [443, 6443]
    args = chart.container(WATCH, "stale-watch")["args"]
    assert "--read-ports=9100,9102" in args

    scraped = render(
        "staleWatch.enabled=true", "networkPolicies.operatorClientNamespaces={monitoring}"
    )
    (rule,) = scraped.get("NetworkPolicy", WATCH)["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9091}]
    assert rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["monitoring"]


def test_the_operator_admits_it_to_its_metrics_port_only() -> None:
    chart = render("staleWatch.enabled=true", "metrics.port=9100")
    (rule,) = chart.get("NetworkPolicy", "hello-mtls-operator")["spec"]["ingress"]
    assert rule == {
        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": WATCH}}}],
        "ports": [{"protocol": "TCP", "port": 9100}],
    }
    both = render(
        "staleWatch.enabled=true", "networkPolicies.operatorClientNamespaces={monitoring}"
    )
    assert len(both.get("NetworkPolicy", "hello-mtls-operator")["spec"]["ingress"]) == 2


def test_without_network_policies_it_has_none() -> None:
    chart = render("staleWatch.enabled=true", "networkPolicies.enabled=false")
    chart.get("Deployment", WATCH)
    assert chart.find("NetworkPolicy", WATCH) is None


def test_without_the_operators_metrics_the_render_fails() -> None:
    result = run_helm_template("staleWatch.enabled=true", "metrics.enabled=false")
    assert result.returncode != 0
    assert "set metrics.enabled=true" in result.stderr
