"""``hello-mtls check``: everything a healthy install needs, one `Check` a line, each failed one
with its fix (the model: ``linkerd check``)."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mtls_cli import events, network_probe
from mtls_cli.ca_status import CAReport
from mtls_cli.cluster import CA_DEPLOYMENT, Api, ApiError
from mtls_cli.times import ago, left_of, parse_time
from mtls_contract.marks import LEASE_NAME

__all__ = ["Check", "run_checks"]

OPERATOR = "hello-mtls-operator"
SIGNERS = "hello-mtls-ca-signer"
PROVEN_MINOR = 37
"""The Kubernetes minor version the cluster tests run on (hack/versions.sh)."""
DEFAULT_RELEASE = "hello-mtls"
POLICIES = (
    ("validatingadmissionpolicies", "ValidatingAdmissionPolicy", "names", "namesPolicy"),
    ("mutatingadmissionpolicies", "MutatingAdmissionPolicy", "wiring", "wiringPolicy"),
    (
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        "operator",
        "operatorWritesPolicy",
    ),
)
"""Each admission policy the chart installs by default (its name after `cluster_prefix`), with
the value that turns it on."""
NETWORK_POLICIES = (CA_DEPLOYMENT, OPERATOR)
INTERMEDIATE_WARNING = datetime.timedelta(days=60)
ROOT_WARNING = datetime.timedelta(days=180)
"""As the alert HelloMTLSSigningCAExpiring (docs/alerts.md): the CA renews its intermediate at
122 days left, so 60 means it has failed to for two months."""

ReadCA = Callable[[Api, str], CAReport]


@dataclass(frozen=True)
class Check:
    """One line of ``hello-mtls check``."""

    ok: bool
    text: str
    fix: str = ""


def cluster_prefix(release: str) -> str:
    """The prefix of the cluster-scoped objects of the Helm release ``release`` (the chart's
    ``hello-mtls.fullname``): the release name if it holds ``hello-mtls``, else
    ``<release>-hello-mtls``."""
    name = release if DEFAULT_RELEASE in release else f"{release}-{DEFAULT_RELEASE}"
    return name[:63].rstrip("-")


def run_checks(
    api: Api,
    namespace: str,
    read_ca: ReadCA,
    now: datetime.datetime,
    *,
    probe: bool = True,
    release: str = DEFAULT_RELEASE,
) -> list[Check]:
    """Every check, in the order a user fixes them: the API, the policies (of the Helm release
    ``release``), the workloads, the CA, the network policies (with ``probe``, enforced:
    `network_probe`), issuance. A check whose read fails is failed with the API's message."""
    found: list[Check] = []
    network = (_network_policies, _network_probe) if probe else (_network_policies,)
    policies = functools.update_wrapper(
        functools.partial(_admission_policies, prefix=cluster_prefix(release)), _admission_policies
    )
    for part in (
        _api_server,
        policies,
        _workloads,
        _leader,
        _ca,
        *network,
        _issuance,
    ):
        try:
            found += part(api, namespace, read_ca, now)
        except ApiError as error:
            found.append(Check(False, f"{part.__name__[1:].replace('_', ' ')}: {error}"))
    return found


def _api_server(api: Api, namespace: str, _r: ReadCA, _n: datetime.datetime) -> Iterator[Check]:
    version = api.get("/version") or {}
    minor = int("".join(c for c in str(version.get("minor", "0")) if c.isdigit()) or 0)
    text = f"Kubernetes API {version.get('gitVersion', '?')}"
    if minor >= PROVEN_MINOR:
        yield Check(True, text)
    else:
        yield Check(
            True, f"{text} (hello-mtls is tested on 1.{PROVEN_MINOR}; see docs/upgrades.md)"
        )
    served = _served(api, "/apis/admissionregistration.k8s.io/v1")
    for _, kind, _, value in POLICIES[:2]:
        yield Check(
            kind in served,
            f"the API serves {kind} (admissionregistration.k8s.io/v1)",
            f"{kind} is GA from Kubernetes 1.{30 if kind.startswith('V') else 36};"
            f" upgrade the cluster or install with --set {value}.enabled=false",
        )
    operator = _deployment(api, namespace, OPERATOR)
    if operator is not None and _env(operator, "HELLO_MTLS_POD_CERTIFICATE_SIGNER"):
        served = _served(api, "/apis/certificates.k8s.io/v1") | _served(
            api, "/apis/certificates.k8s.io/v1beta1"
        )
        yield Check(
            "PodCertificateRequest" in served,
            "the API serves PodCertificateRequest (podCertificates.enabled is on)",
            "PodCertificateRequest is GA from Kubernetes 1.37; upgrade the cluster or install"
            " with --set podCertificates.enabled=false",
        )


def _admission_policies(
    api: Api, _ns: str, _r: ReadCA, _n: datetime.datetime, *, prefix: str
) -> Iterator[Check]:
    group = "/apis/admissionregistration.k8s.io/v1"
    for plural, kind, suffix, value in POLICIES:
        name = f"{prefix}-{suffix}"
        policy = api.get(f"{group}/{plural}/{name}")
        binding = api.get(f"{group}/{plural[:-3]}ybindings/{name}")
        missing = [
            what for what, found in ((kind, policy), (f"{kind}Binding", binding)) if found is None
        ]
        yield Check(
            not missing,
            f"{kind} {name} and its binding",
            f"missing {' and '.join(missing)}: helm upgrade with --set {value}.enabled=true"
            " (or kubectl apply -f k8s/); a Helm release not named hello-mtls: --release NAME",
        )


def _workloads(api: Api, namespace: str, _r: ReadCA, _n: datetime.datetime) -> Iterator[Check]:
    for name, optional in ((CA_DEPLOYMENT, False), (SIGNERS, True), (OPERATOR, False)):
        deployment = _deployment(api, namespace, name)
        if deployment is None:
            if not optional:
                yield Check(
                    False, f"Deployment {name}", f"not found in namespace {namespace}: install"
                )
            continue
        wanted = int(deployment["spec"].get("replicas", 1))
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        yield Check(
            wanted > 0 and ready >= wanted,
            f"Deployment {name}: {ready}/{wanted} ready",
            f"kubectl -n {namespace} describe deployment {name}; kubectl -n {namespace} logs"
            f" deploy/{name}",
        )


def _leader(api: Api, namespace: str, _r: ReadCA, now: datetime.datetime) -> Iterator[Check]:
    lease = api.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{LEASE_NAME}")
    spec = (lease or {}).get("spec") or {}
    holder = str(spec.get("holderIdentity") or "")
    renewed = parse_time(spec.get("renewTime"))
    duration = datetime.timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))
    fix = (
        f"no replica holds Lease {namespace}/{LEASE_NAME}: kubectl -n {namespace} logs"
        f" deploy/{OPERATOR}"
    )
    if not holder or renewed is None:
        yield Check(False, "an operator leader", fix)
        return
    age = now - renewed
    yield Check(
        age <= duration,
        f"an operator leader: {holder.split('_')[0]} (Lease renewed {ago(age)})",
        f"the leader stopped renewing its Lease (lease {duration.seconds} s): {fix}",
    )


def _ca(api: Api, namespace: str, read_ca: ReadCA, now: datetime.datetime) -> Iterator[Check]:
    try:
        report = read_ca(api, namespace)
    except (OSError, ValueError, ApiError) as error:
        yield Check(
            False,
            "the CA answers GET /status",
            f"{error}: kubectl -n {namespace} logs deploy/{CA_DEPLOYMENT}",
        )
        return
    status = report.status
    yield Check(True, f"the CA answers GET /status (root rotation phase {status.get('phase')})")
    yield Check(
        report.chain_error is None,
        f"the CA serves a chain to its roots for {CA_DEPLOYMENT}.{namespace}.svc"
        + (f", valid {left_of(report.served_not_after - now)}" if report.served_not_after else ""),
        f"{report.chain_error}: restart the CA (kubectl -n {namespace} rollout restart"
        f" deploy/{CA_DEPLOYMENT}); its serving certificate is issued at start",
    )
    signing = status.get("signing") or {}
    intermediate = parse_time(signing.get("intermediate_not_after"))
    if intermediate is not None:
        left = intermediate - now
        yield Check(
            left >= INTERMEDIATE_WARNING,
            f"the signing intermediate is valid {left_of(left)}",
            "the CA renews it at 122 days left; see docs/alerts.md#hellomtlssigningcaexpiring",
        )
    for root in status.get("roots") or []:
        not_after = parse_time(root.get("not_after"))
        if not_after is None:
            continue
        left = not_after - now
        yield Check(
            left >= ROOT_WARNING,
            f"root {str(root.get('fingerprint_sha256', ''))[:16]} is valid {left_of(left)}",
            "rotate the root: docs/ca.md#root-rotation",
        )


def _network_policies(
    api: Api, namespace: str, _r: ReadCA, _n: datetime.datetime
) -> Iterator[Check]:
    path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
    for name in NETWORK_POLICIES:
        yield Check(
            api.get(f"{path}/{name}") is not None,
            f"NetworkPolicy {name}",
            "helm upgrade with --set networkPolicies.enabled=true (docs/security.md); the"
            " cluster's network plugin must enforce NetworkPolicies",
        )


def _network_probe(api: Api, namespace: str, _r: ReadCA, _n: datetime.datetime) -> Iterator[Check]:
    outcome = network_probe.probe(api, namespace)
    yield Check(outcome.refused, f"NetworkPolicy enforced: {outcome.text}", outcome.fix)


def _issuance(api: Api, _ns: str, _r: ReadCA, now: datetime.datetime) -> Iterator[Check]:
    issued, failures = events.issuance(api)
    if failures:
        newest = failures[-1]
        yield Check(
            False,
            f"the operator's last issuance failed {ago(now - newest.time)}",
            f"{newest.reason} for pod {newest.namespace}/{newest.pod}: {newest.message}",
        )
    elif issued is None:
        yield Check(True, "no issuance in the Events the API server keeps (1 h by default)")
    else:
        yield Check(
            True,
            f"the operator's last issuance succeeded {ago(now - issued.time)}"
            f" ({issued.namespace}/{issued.pod})",
        )


def _served(api: Api, group_version: str) -> set[str]:
    resources = (api.get(group_version) or {}).get("resources") or []
    return {str(r.get("kind")) for r in resources if "/" not in str(r.get("name", ""))}


def _deployment(api: Api, namespace: str, name: str) -> dict[str, Any] | None:
    return api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")


def _env(deployment: dict[str, Any], name: str) -> str:
    for container in deployment["spec"]["template"]["spec"].get("containers") or []:
        for variable in container.get("env") or []:
            if variable.get("name") == name:
                return str(variable.get("value") or "")
    return ""
