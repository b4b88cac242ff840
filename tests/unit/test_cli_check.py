"""``hello-mtls check`` on a fake API: every line, and the exit status scripts read."""

from __future__ import annotations

import datetime
import io
from typing import Any

import pytest

from mtls_cli import checks, network_probe
from mtls_cli.ca_status import CAReport
from mtls_cli.cli import main
from mtls_cli.cluster import Api
from support.api_paths import NOW, NS, Paths, healthy_install, operator_event, rfc3339

DAY = datetime.timedelta(days=1)
SEC = datetime.timedelta(seconds=1)


def ca_report(
    intermediate_left: datetime.timedelta = 300 * DAY,
    chain_error: str | None = None,
    now: datetime.datetime = NOW,
) -> CAReport:
    status: dict[str, Any] = {
        "phase": "idle",
        "trust_domain": "cluster.local",
        "roots": [{"fingerprint_sha256": "ab" * 32, "not_after": rfc3339(now + 3000 * DAY)}],
        "signing": {
            "intermediate_fingerprint_sha256": "cd" * 32,
            "intermediate_not_after": rfc3339(now + intermediate_left),
        },
        "bundle_sha256": "ef" * 32,
    }
    served = None if chain_error else now + DAY
    return CAReport(status, b"", served, chain_error)


def run(api: Paths, report: CAReport | Exception | None = None) -> list[checks.Check]:
    def read(_api: Api, namespace: str) -> CAReport:
        assert namespace == NS
        if isinstance(report, Exception):
            raise report
        return report or ca_report()

    return checks.run_checks(api, NS, read, NOW)


def failed(found: list[checks.Check]) -> list[str]:
    return [c.text for c in found if not c.ok]


def test_a_healthy_install_passes_every_check() -> None:
    found = run(healthy_install())
    assert failed(found) == []
    texts = [c.text for c in found]
    assert texts[0] == "Kubernetes API v1.37.2"
    assert "an operator leader: hello-mtls-operator-7d9f-abcde (Lease renewed 2s ago)" in texts
    assert "the signing intermediate is valid for 300d" in texts
    assert "Deployment hello-mtls-operator: 2/2 ready" in texts
    assert any(t.startswith("the CA serves a chain to its roots") for t in texts)


def test_the_exit_status_is_0_when_all_pass_and_1_when_one_fails() -> None:
    now = datetime.datetime.now(datetime.UTC)  # main reads the real clock
    api = healthy_install(now)
    out = io.StringIO()
    assert main(["check"], api=lambda _: api, read=lambda *_: ca_report(now=now), out=out) == 0
    assert out.getvalue().splitlines()[0] == "✓ Kubernetes API v1.37.2"
    del api.objects[f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/hello-mtls-ca"]
    out = io.StringIO()
    assert main(["check"], api=lambda _: api, read=lambda *_: ca_report(now=now), out=out) == 1
    lines = out.getvalue().splitlines()
    i = lines.index("✗ NetworkPolicy hello-mtls-ca")
    assert lines[i + 1].startswith("    fix: helm upgrade with --set networkPolicies.enabled=true")
    assert lines[-1].endswith("1 failed")


def test_a_missing_binding_is_named_with_its_fix() -> None:
    api = healthy_install()
    group = "/apis/admissionregistration.k8s.io/v1"
    del api.objects[f"{group}/mutatingadmissionpolicybindings/hello-mtls-wiring"]
    [check] = [c for c in run(api) if not c.ok]
    assert check.text == "MutatingAdmissionPolicy hello-mtls-wiring and its binding"
    assert check.fix.startswith("missing MutatingAdmissionPolicyBinding: helm upgrade with --set")


def test_an_api_without_mutating_admission_policy_fails_with_the_way_out() -> None:
    api = healthy_install()
    api.put("/version", {"major": "1", "minor": "33", "gitVersion": "v1.33.13"})
    api.put(
        "/apis/admissionregistration.k8s.io/v1",
        {
            "resources": [
                {"name": "validatingadmissionpolicies", "kind": "ValidatingAdmissionPolicy"}
            ]
        },
    )
    [check] = [c for c in run(api) if not c.ok and "serves" in c.text]
    assert "--set wiringPolicy.enabled=false" in check.fix
    assert run(api)[0].text.startswith("Kubernetes API v1.33.13 (hello-mtls is tested on 1.37")


def test_pod_certificates_on_need_the_api_to_serve_them() -> None:
    api = healthy_install()
    apps = f"/apis/apps/v1/namespaces/{NS}/deployments"
    api.put(
        f"{apps}/hello-mtls-operator",
        {
            **api.objects[f"{apps}/hello-mtls-operator"],
            "spec": {
                "replicas": 2,
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "env": [
                                    {
                                        "name": "HELLO_MTLS_POD_CERTIFICATE_SIGNER",
                                        "value": "hello-mtls.dev/pod",
                                    }
                                ]
                            }
                        ]
                    }
                },
            },
        },
    )
    assert failed(run(api)) == [
        "the API serves PodCertificateRequest (podCertificates.enabled is on)"
    ]
    api.put(
        "/apis/certificates.k8s.io/v1",
        {"resources": [{"name": "podcertificaterequests", "kind": "PodCertificateRequest"}]},
    )
    assert failed(run(api)) == []


def test_an_unready_deployment_and_a_stale_lease_fail() -> None:
    api = healthy_install()
    apps = f"/apis/apps/v1/namespaces/{NS}/deployments"
    api.objects[f"{apps}/hello-mtls-ca"]["status"] = {}
    lease = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/hello-mtls-operator"
    api.objects[lease]["spec"]["renewTime"] = rfc3339(NOW - datetime.timedelta(minutes=5))
    assert failed(run(api)) == [
        "Deployment hello-mtls-ca: 0/1 ready",
        "an operator leader: hello-mtls-operator-7d9f-abcde (Lease renewed 5m ago)",
    ]
    api.objects[lease]["spec"]["holderIdentity"] = ""
    assert "an operator leader" in failed(run(api))


def test_signer_pods_are_checked_when_installed() -> None:
    api = healthy_install()
    apps = f"/apis/apps/v1/namespaces/{NS}/deployments"
    api.put(
        f"{apps}/hello-mtls-ca-signer", {"spec": {"replicas": 3}, "status": {"readyReplicas": 2}}
    )
    assert failed(run(api)) == ["Deployment hello-mtls-ca-signer: 2/3 ready"]


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (OSError("no ready pod"), "the CA answers GET /status"),
        (ca_report(chain_error="Hostname mismatch"), "the CA serves a chain to its roots for"),
        (ca_report(intermediate_left=30 * DAY), "the signing intermediate is valid for 30d"),
    ],
)
def test_ca_problems_fail(report: CAReport | Exception, expected: str) -> None:
    [text] = failed(run(healthy_install(), report))
    assert text.startswith(expected)


def test_the_last_issuance_is_the_newest_issued_event_unless_a_failure_came_after() -> None:
    api = healthy_install()
    assert failed(run(api)) == []  # no Events kept: nothing to judge
    api.put(*operator_event("shop", "web-1", "Issued", "certificate 1f ...", NOW - 600 * SEC, 1))
    api.put(*operator_event("shop", "web-2", "CAUnreachable", "refused", NOW - 900 * SEC, 2))
    texts = [c.text for c in run(api)]
    assert "the operator's last issuance succeeded 10m ago (shop/web-1)" in texts
    api.put(*operator_event("shop", "web-3", "IssueRefused", "name 'x' is not", NOW - 60 * SEC, 3))
    [check] = [c for c in run(api) if not c.ok]
    assert check.text == "the operator's last issuance failed 60s ago"
    assert check.fix == "IssueRefused for pod shop/web-3: name 'x' is not"
    api.put(*operator_event("shop", "web-3", "Issued", "certificate 20 ...", NOW - 30 * SEC, 4))
    assert failed(run(api)) == []


def test_a_failure_resolved_for_its_pod_fails_nothing_though_it_came_last() -> None:
    """The CA was down while two pods waited: both got CAUnreachable; once it answered, the
    operator issued for both, the last Event being the other pod's failure it has since fixed."""
    api = healthy_install()
    for number, (pod, reason, seconds) in enumerate(
        [
            ("web-1", "CAUnreachable", 90),
            ("web-2", "CAUnreachable", 80),
            ("web-1", "Issued", 70),
            ("web-2", "Issued", 65),
            ("web-1", "CAUnreachable", 60),
            ("web-1", "Issued", 50),
        ]
    ):
        api.put(*operator_event("shop", pod, reason, "...", NOW - seconds * SEC, number))
    assert failed(run(api)) == []


def test_a_read_that_fails_fails_its_check_and_the_rest_go_on() -> None:
    api = healthy_install()
    api.failing.add("/version")
    found = run(api)
    assert failed(found) == [
        "api server: 503 GET /version: the server is currently unable to handle the request"
    ]
    assert len(found) > 10


def test_the_probe_pod_refused_at_the_signing_port_passes_and_is_deleted() -> None:
    api = healthy_install()
    found = run(api)
    probe = next(c for c in found if c.text.startswith("NetworkPolicy enforced"))
    assert probe.ok
    assert probe.text == (
        "NetworkPolicy enforced: a pod without the operator's labels cannot reach"
        " hello-mtls-ca.hello-mtls.svc:8444"
    )
    (pod,) = api.created
    name = pod["metadata"]["name"]
    assert name.startswith("hello-mtls-check-probe-")
    assert api.deleted == [f"/api/v1/namespaces/{NS}/pods/{name}"]
    spec = pod["spec"]
    assert spec["activeDeadlineSeconds"] == network_probe.DEADLINE_SECONDS
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["image"] == "hello-mtls/ca:dev"  # the CA's own: nothing is pulled
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert pod["metadata"]["labels"] == {"app.kubernetes.io/name": "hello-mtls-check-probe"}


@pytest.mark.parametrize(
    ("exit_code", "text", "fix"),
    [
        (1, "reaches hello-mtls-ca.hello-mtls.svc:8444", "does not enforce NetworkPolicies"),
        (3, "cannot reach hello-mtls-ca.hello-mtls.svc:443, so it cannot tell", "endpointslices"),
        (137, "the probe pod failed (exit status 137)", "its log"),
    ],
)
def test_a_probe_that_is_not_refused_fails_with_its_fix(
    exit_code: int, text: str, fix: str
) -> None:
    api = healthy_install()
    api.probe_exit = exit_code
    probe = next(c for c in run(api) if c.text.startswith("NetworkPolicy enforced"))
    assert not probe.ok and text in probe.text and fix in probe.fix
    assert len(api.deleted) == 1


def test_a_probe_pod_that_never_ends_fails_at_its_deadline_and_is_deleted() -> None:
    api = healthy_install()
    api.probe_exit = None
    ticks = iter(range(0, 1000, 10))
    outcome = network_probe.probe(api, NS, sleep=lambda _: None, clock=lambda: next(ticks))
    assert not outcome.refused
    assert f"did not finish within {network_probe.DEADLINE_SECONDS} s" in outcome.text
    assert len(api.deleted) == 1


def test_no_network_probe_starts_no_pod() -> None:
    now = datetime.datetime.now(datetime.UTC)  # main reads the real clock
    api = healthy_install(now)
    out = io.StringIO()
    code = main(
        ["check", "--no-network-probe"],
        api=lambda _: api,
        read=lambda *_: ca_report(now=now),
        out=out,
    )
    assert code == 0
    assert api.created == [] and "NetworkPolicy enforced" not in out.getvalue()


def test_the_policies_of_another_release_are_found_with_release() -> None:
    now = datetime.datetime.now(datetime.UTC)  # main reads the real clock
    api = healthy_install(now)
    group = "/apis/admissionregistration.k8s.io/v1/"
    for path in [p for p in api.objects if p.startswith(group) and "/hello-mtls-" in p]:
        api.objects[path.replace("/hello-mtls-", "/fed-a-hello-mtls-")] = api.objects.pop(path)

    def check(*args: str) -> tuple[int, list[str]]:
        out = io.StringIO()
        argv = ["check", "--no-network-probe", *args]
        code = main(argv, api=lambda _: api, read=lambda *_: ca_report(now=now), out=out)
        return code, [line for line in out.getvalue().splitlines() if line.startswith("✗")]

    assert check("--release", "fed-a") == (0, [])
    code, failures = check()
    assert code == 1
    assert failures == [
        "✗ ValidatingAdmissionPolicy hello-mtls-names and its binding",
        "✗ MutatingAdmissionPolicy hello-mtls-wiring and its binding",
        "✗ ValidatingAdmissionPolicy hello-mtls-operator and its binding",
    ]


@pytest.mark.parametrize(
    ("release", "prefix"),
    [
        ("hello-mtls", "hello-mtls"),
        ("hello-mtls-east", "hello-mtls-east"),
        ("fed-a", "fed-a-hello-mtls"),
    ],
)
def test_the_cluster_prefix_is_the_charts_fullname(release: str, prefix: str) -> None:
    assert checks.cluster_prefix(release) == prefix
