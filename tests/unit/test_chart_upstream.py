"""The chart's upstream-root modes (ca.upstream), rendered by the real ``helm template``: the
organisation's key reaches the root holder alone, and only where no other role of the chart may
read its Secret."""

from __future__ import annotations

from support.chart import NAMESPACE, Rendered, render, run_helm_template

ROOT_HOLDER = "hello-mtls-ca"
SIGNER = "hello-mtls-ca-signer"
VOLUME = ("ca.upstream.mode=volume", "operator.watchNamespaces={shop,dev}")


def _args(chart: Rendered) -> list[str]:
    return list(chart.container(ROOT_HOLDER, "ca")["args"])


def _volumes(chart: Rendered) -> list[dict[str, object]]:
    return list(chart.get("Deployment", ROOT_HOLDER)["spec"]["template"]["spec"]["volumes"])


def test_by_default_the_ca_makes_its_own_root() -> None:
    chart = render()
    args = _args(chart)
    assert "--create-if-missing" in args
    assert not [a for a in args if a.startswith("--upstream")]
    assert "startupProbe" not in chart.container(ROOT_HOLDER, "ca")
    assert "startupProbe" not in chart.container(SIGNER, "signer")
    assert "optional" not in _roots(chart)


def test_offline_waits_for_the_import_without_being_restarted() -> None:
    chart = render("ca.upstream.mode=offline")
    args = _args(chart)
    assert "--upstream-offline" in args and "--create-if-missing" not in args
    probe = chart.container(ROOT_HOLDER, "ca")["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 24 * 3600


def _roots(chart: Rendered) -> dict[str, object]:
    volumes = chart.get("Deployment", SIGNER)["spec"]["template"]["spec"]["volumes"]
    return dict(next(v for v in volumes if v["name"] == "roots")["secret"])


def test_offline_signers_start_without_the_roots_and_wait_for_the_import() -> None:
    chart = render("ca.upstream.mode=offline")
    assert _roots(chart)["optional"] is True
    probe = chart.container(SIGNER, "signer")["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 24 * 3600


def test_volume_mounts_the_secret_into_the_root_holder_alone() -> None:
    chart = render(*VOLUME, "ca.upstream.secretName=org-ca")
    assert "--upstream-dir=/var/run/hello-mtls-ca/upstream" in _args(chart)
    (volume,) = [v for v in _volumes(chart) if v["name"] == "upstream"]
    assert volume["secret"] == {"secretName": "org-ca", "defaultMode": 0o440}
    mount = next(
        m for m in chart.container(ROOT_HOLDER, "ca")["volumeMounts"] if m["name"] == "upstream"
    )
    assert mount["readOnly"] is True
    for deployment in chart.objects:
        if deployment["kind"] != "Deployment" or deployment["metadata"]["name"] == ROOT_HOLDER:
            continue
        for v in deployment["spec"]["template"]["spec"].get("volumes", []):
            assert v.get("secret", {}).get("secretName") != "org-ca", deployment["metadata"]


def test_volume_leaves_the_secret_to_no_other_role_of_the_chart() -> None:
    chart = render(*VOLUME, "ca.upstream.secretName=org-ca")
    assert chart.find("ClusterRoleBinding", "hello-mtls-operator") is None
    for binding in chart.objects:
        if binding["kind"] != "RoleBinding" or binding["metadata"]["namespace"] != NAMESPACE:
            continue
        role = chart.get(binding["roleRef"]["kind"], binding["roleRef"]["name"])
        for rule in role["rules"]:
            if "secrets" in rule.get("resources", []):
                readable = {"get", "list", "watch"} & set(rule["verbs"])
                assert not readable or "org-ca" not in rule.get("resourceNames", ["org-ca"]), (
                    f"{binding['metadata']['name']} may read the organisation's key"
                )


def test_volume_refuses_an_operator_that_may_read_the_cas_secrets() -> None:
    for watched in ("ca.upstream.mode=volume", f"operator.watchNamespaces={{shop,{NAMESPACE}}}"):
        result = run_helm_template("ca.upstream.mode=volume", watched)
        assert result.returncode != 0
        assert "list them in operator.watchNamespaces, without hello-mtls" in result.stderr
