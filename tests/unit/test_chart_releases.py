"""Two releases of the chart in one cluster (docs/federation.md, "Two installs in one cluster"),
rendered by the real ``helm template`` (tests/support/chart.py): the cluster-scoped objects are
named after the release (the release hello-mtls keeps today's names, so the upgrade and k8s/ do
not change), and with ``operator.watchNamespaces`` every admission policy judges only what its
own install serves. The e2e (tests/e2e/test_federation.py) installs two such releases."""

from __future__ import annotations

from typing import Any

from support.chart import Rendered, render

CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
}
EVERY_PART = ("podCertificates.enabled=true", "ca.signers.replicas=2")
"""Values that render every cluster-scoped object of the chart."""
TODAY = {
    ("ClusterRole", "hello-mtls-ca-tokenreviews"),
    ("ClusterRoleBinding", "hello-mtls-ca-tokenreviews"),
    ("ClusterRole", "hello-mtls-operator"),
    ("ClusterRoleBinding", "hello-mtls-operator"),
    ("ClusterRole", "hello-mtls-pod-certificate-signer"),
    ("ClusterRoleBinding", "hello-mtls-pod-certificate-signer"),
    ("ValidatingAdmissionPolicy", "hello-mtls-names"),
    ("ValidatingAdmissionPolicyBinding", "hello-mtls-names"),
    ("MutatingAdmissionPolicy", "hello-mtls-wiring"),
    ("MutatingAdmissionPolicyBinding", "hello-mtls-wiring"),
    ("ValidatingAdmissionPolicy", "hello-mtls-operator"),
    ("ValidatingAdmissionPolicyBinding", "hello-mtls-operator"),
}
"""What the release hello-mtls has installed since before v0.2.0."""


def _cluster_scoped(chart: Rendered) -> list[dict[str, Any]]:
    return [o for o in chart.objects if o["kind"] in CLUSTER_SCOPED]


def _names(chart: Rendered) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in _cluster_scoped(chart)}


def _scoped(release: str, *apps: str) -> Rendered:
    return render(
        *EVERY_PART,
        f"operator.watchNamespaces={{{','.join(apps)}}}",
        release=release,
        namespace=release,
    )


def test_the_release_hello_mtls_keeps_todays_cluster_scoped_names() -> None:
    assert _names(render(*EVERY_PART)) == TODAY


def test_a_release_that_holds_the_chart_name_is_the_prefix() -> None:
    names = {name for _, name in _names(render(*EVERY_PART, release="hello-mtls-east"))}
    assert names == {name.replace("hello-mtls", "hello-mtls-east", 1) for _, name in TODAY}


def test_another_release_names_and_binds_only_its_own_cluster_scoped_objects() -> None:
    chart = render(*EVERY_PART, release="fed-a", namespace="fed-a")
    objects = _cluster_scoped(chart)
    assert {
        (kind, name.replace("fed-a-hello-mtls", "hello-mtls")) for kind, name in _names(chart)
    } == TODAY
    for found in objects:
        name = found["metadata"]["name"]
        assert name.startswith("fed-a-hello-mtls-"), name
        if found["kind"] == "ClusterRoleBinding":
            assert found["roleRef"]["name"] == name
            assert {(s["name"], s["namespace"]) for s in found["subjects"]} <= {
                ("hello-mtls-operator", "fed-a"),
                ("hello-mtls-ca", "fed-a"),
            }
        if found["kind"].endswith("PolicyBinding"):
            assert found["spec"]["policyName"] == name


def test_two_releases_share_no_cluster_scoped_object() -> None:
    assert _names(_scoped("fed-a", "fed-a-apps")) & _names(_scoped("fed-b", "fed-b-apps")) == set()


def test_a_scoped_release_binds_the_operator_in_its_namespaces_only() -> None:
    chart = _scoped("fed-a", "fed-a-apps", "fed-a-shop")
    assert chart.find("ClusterRoleBinding", "fed-a-hello-mtls-operator") is None
    for namespace in ("fed-a-apps", "fed-a-shop"):
        binding = next(
            o
            for o in chart.objects
            if o["kind"] == "RoleBinding"
            and o["metadata"]["namespace"] == namespace
            and o["roleRef"]["kind"] == "ClusterRole"
        )
        assert binding["roleRef"]["name"] == "fed-a-hello-mtls-operator"


def _served(policy: dict[str, Any]) -> list[str] | None:
    """The namespaces a policy's namespaceSelector admits with ``In`` (None: no such limit)."""
    selector = policy["spec"]["matchConstraints"].get("namespaceSelector", {})
    for expression in selector.get("matchExpressions", []):
        if expression["key"] == "kubernetes.io/metadata.name" and expression["operator"] == "In":
            return list(expression["values"])
    return None


def _judges_only(policy: dict[str, Any]) -> str | None:
    """The one user a policy's matchConditions limit it to (None: no such limit)."""
    for condition in policy["spec"].get("matchConditions", []):
        expression = condition["expression"]
        if expression.startswith("request.userInfo.username == "):
            return str(expression.split("==", 1)[1].strip().strip("'"))
    return None


def test_watch_namespaces_scope_every_admission_policy_to_its_own_install() -> None:
    a = _scoped("fed-a", "fed-a-apps")
    b = _scoped("fed-b", "fed-b-apps")
    for chart, release in ((a, "fed-a"), (b, "fed-b")):
        policies = [o for o in chart.objects if o["kind"].endswith("AdmissionPolicy")]
        assert len(policies) == 3
        for policy in policies:
            # The names and wiring policies judge the pods of the install's namespaces; the
            # write policy judges what its own operator's ServiceAccount writes, wherever.
            scope = _served(policy), _judges_only(policy)
            assert scope in [
                ([f"{release}-apps"], None),
                (None, f"system:serviceaccount:{release}:hello-mtls-operator"),
            ], (policy["metadata"]["name"], scope)


def test_without_watch_namespaces_the_pod_policies_serve_every_other_namespace() -> None:
    chart = render()
    for kind, name in (
        ("ValidatingAdmissionPolicy", "hello-mtls-names"),
        ("MutatingAdmissionPolicy", "hello-mtls-wiring"),
    ):
        assert _served(chart.get(kind, name)) is None
