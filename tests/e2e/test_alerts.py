"""The chart's alerts on the cluster, evaluated by a real Prometheus (Debian's ``prometheus``, a
host process on 127.0.0.1 for the module's lifetime) with the rules of the chart's
PrometheusRule, rendered with short ``for:`` durations through ``metrics.prometheusRule.for``.

- HelloMTLSCADown fires when the CA's pods are scaled to 0, not before, and resolves once a CA
  pod answers again.
- HelloMTLSStaleCertificate fires for the server whose reload is held back (a check interval
  of an hour) once its Secret is renewed, and not for the server that reloads; ``hello-mtls
  status`` says the same, and so does the install's stale-certificate watch
  (``staleWatch.enabled`` in tests/e2e/conftest.py): a Warning Event ``StaleCertificate`` on the
  held server's pod, none on the other's, and the held pod in its metric.

The module shares the install with the modules beside it, so the CA it scales to 0 is its own:
the CA image run as the chart runs it (``hello-mtls-ca serve --create-if-missing``) in the
module's namespace, the only CA this Prometheus scrapes. Scaling the installed CA would stall
every module that waits for a certificate meanwhile. Prometheus scrapes the module's pods
on their pod IPs, listed by the module into a ``file_sd_configs`` file as Kubernetes discovery
would (Debian's build has none); the operator, whose NetworkPolicy admits no scraper from the
host, through a ``kubectl port-forward`` per replica. It reads what the operator reports of every
Secret, and what the example servers serve (``--metrics-port``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness.processes import BIN, stop
from harness.waiting import wait_until
from mtls_cli.stale_watch import REASON
from mtls_contract.marks import ANNOTATION_SERIAL
from support.cluster_api import (
    APP_METRICS_PORT,
    IMAGE_TAG,
    PRODUCT_NAMESPACE,
    RELEASE,
    ROOT,
    apply,
    dump_namespace,
    kubectl,
    kubectl_json,
    log,
)
from support.prometheus import Prometheus, prometheus

FOR = {"HelloMTLSCADown": "10s", "HelloMTLSStaleCertificate": "90s"}
"""Short enough for the module; the stale alert's still exceeds the kubelet's delay in updating
a Secret volume (up to its sync period, one minute by default, plus jitter)."""
METRICS_PORT = APP_METRICS_PORT
WATCH_METRICS_PORT = 9091
"""The stale-certificate watch's own ``/metrics`` (``staleWatch.port``)."""
_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def rules(work: Path) -> Path:
    """The rule file of the chart's PrometheusRule, rendered with `FOR` as a user sets it."""
    helm = os.environ.get("HELM", "helm")
    durations = [f"--set=metrics.prometheusRule.for.{name}={value}" for name, value in FOR.items()]
    rendered = subprocess.run(
        [
            helm,
            "template",
            RELEASE,
            str(ROOT / "charts" / "hello-mtls"),
            "--namespace",
            PRODUCT_NAMESPACE,
            "--set=metrics.prometheusRule.enabled=true",
            *durations,
            "--show-only=templates/monitoring-prometheusrule.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    path = work / "rules.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(rendered)["spec"]))
    return path


def ca_deployment() -> dict[str, Any]:
    """The CA as the chart runs it (its own state, on an emptyDir), one replica."""
    container = {
        "name": "ca",
        "image": f"hello-mtls/ca:{IMAGE_TAG}",
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "hello-mtls-ca",
            "serve",
            "--state=/var/lib/hello-mtls-ca/state",
            "--create-if-missing",
            "--bind=0.0.0.0:8443",
            "--workers=1",
        ],
        "ports": [{"name": "https", "containerPort": 8443}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "https", "scheme": "HTTPS"},
            "periodSeconds": 2,
        },
        "securityContext": _SECURITY,
        "volumeMounts": [
            {"name": "state", "mountPath": "/var/lib/hello-mtls-ca"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return _deployment(
        "hello-mtls-ca",
        {},
        [container],
        [{"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
    )


def server_deployment(name: str, namespace: str, check_interval: int) -> dict[str, Any]:
    """An example server of identity ``NAME.NAMESPACE.svc`` (Secret ``NAME-tls``) whose
    processes look at their files every ``check_interval`` seconds and report what they serve."""
    container = {
        "name": "server",
        "image": f"hello-mtls/server:{IMAGE_TAG}",
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "hello-mtls-server",
            "--bind=0.0.0.0:8443",
            "--cert-dir=/var/run/hello-mtls",
            f"--check-interval={check_interval}",
            f"--metrics-port={METRICS_PORT}",
            "--workers=1",
        ],
        "securityContext": _SECURITY,
        "volumeMounts": [
            {"name": "tls", "mountPath": "/var/run/hello-mtls", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    annotations = {
        "hello-mtls.dev/name": f"{name}.{namespace}.svc",
        "hello-mtls.dev/secret": f"{name}-tls",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT),
    }
    volumes = [
        {"name": "tls", "secret": {"secretName": f"{name}-tls"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    return _deployment(name, annotations, [container], volumes)


def _deployment(
    name: str,
    annotations: dict[str, str],
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 5,
                    "containers": containers,
                    "volumes": volumes,
                },
            },
        },
    }


@contextlib.contextmanager
def port_forward(namespace: str, pod: str, port: int, log_file: Path) -> Iterator[str]:
    """``kubectl port-forward`` to ``pod``:``port``; yields the local ``127.0.0.1:PORT``."""
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            [
                "kubectl",
                "port-forward",
                "--address=127.0.0.1",
                "-n",
                namespace,
                f"pod/{pod}",
                f":{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def forwarding() -> str | None:
            if process.poll() is not None:
                raise RuntimeError(f"kubectl port-forward {pod}: {log_file.read_text()}")
            first = log_file.read_text().partition("\n")[
                0
            ]  # Forwarding from 127.0.0.1:41234 -> 9090
            return first.split()[2] if first.startswith("Forwarding from 127.0.0.1:") else None

        yield wait_until(f"the port-forward to {namespace}/{pod}", forwarding, 30, 0.2)
    finally:
        stop(process)


def discover(namespace: str, targets: Path) -> None:
    """Write the module's pods with a pod IP as ``file_sd_configs`` targets, by job: what
    ``kubernetes_sd_configs`` does in an in-cluster Prometheus (Debian's build has no Kubernetes
    discovery); Prometheus reloads the file when it changes."""
    groups = []
    for pod in kubectl_json("get", "pods", "-n", namespace)["items"]:
        meta, ip = pod["metadata"], pod["status"].get("podIP")
        if not ip or meta.get("deletionTimestamp"):
            continue
        annotations = meta.get("annotations") or {}
        if meta["labels"].get("app.kubernetes.io/name") == "hello-mtls-ca":
            job, address = "hello-mtls-ca", f"{ip}:8443"
        elif annotations.get("prometheus.io/scrape") == "true":
            job, address = "apps", f"{ip}:{annotations['prometheus.io/port']}"
        else:
            continue
        labels = {"job": job, "namespace": namespace, "pod": meta["name"]}
        groups.append({"targets": [address], "labels": labels})
    written = targets.with_suffix(".tmp")
    written.write_text(json.dumps(groups))
    written.replace(targets)


def scrape_configs(targets: Path, operators: list[str]) -> list[dict[str, Any]]:
    files = [{"files": [str(targets)]}]
    keep = [{"source_labels": ["job"], "action": "keep"}]
    return [
        {  # the module's CA: /metrics on the HTTPS read-only port; what is under test is the
            # alert, not the scrape's trust (tests/integration/test_prometheus_scrape.py
            # scrapes the CA trusting its root)
            "job_name": "hello-mtls-ca",
            "scheme": "https",
            "tls_config": {"insecure_skip_verify": True},
            "file_sd_configs": files,
            "relabel_configs": [{**keep[0], "regex": "hello-mtls-ca"}],
        },
        {  # the example servers, by their prometheus.io annotations
            "job_name": "apps",
            "file_sd_configs": files,
            "relabel_configs": [{**keep[0], "regex": "apps"}],
        },
        {
            "job_name": "hello-mtls-operator",
            "static_configs": [{"targets": operators}],
        },
    ]


def alerts(api: Prometheus, name: str) -> list[dict[str, Any]]:
    """The pending and firing alerts of rule ``name``."""
    return [a for rule in api.alerting_rules() if rule["name"] == name for a in rule["alerts"]]


def firing(api: Prometheus, name: str) -> list[dict[str, Any]]:
    return [a for a in alerts(api, name) if a["state"] == "firing"]


class Setup:
    def __init__(self, namespace: str, api: Prometheus, targets: Path) -> None:
        self.namespace = namespace
        self.api = api
        self.targets = targets


@pytest.fixture(scope="module")
def setup(
    request: pytest.FixtureRequest, installed: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    namespace = f"e2e-alerts-{secrets.token_hex(3)}"
    kubectl("create", "namespace", namespace)
    log(f"namespace {namespace}")
    failures = request.session.testsfailed
    failed = True
    try:
        apply(ca_deployment(), namespace)
        apply(server_deployment("fresh", namespace, 1), namespace)
        apply(server_deployment("held", namespace, 3600), namespace)
        for name in ("hello-mtls-ca", "fresh", "held"):
            kubectl(
                "rollout",
                "status",
                f"deployment/{name}",
                "-n",
                namespace,
                "--timeout=180s",
                timeout=200,
            )
        operator_pods = running_pods("hello-mtls-operator")
        work = tmp_path_factory.mktemp("prometheus")
        with contextlib.ExitStack() as stack:
            operators = [
                stack.enter_context(
                    port_forward(PRODUCT_NAMESPACE, name, 9090, work / f"port-forward-{name}.log")
                )
                for name in operator_pods
            ]
            targets = work / "targets.json"
            discover(namespace, targets)
            jobs = scrape_configs(targets, operators)
            api = stack.enter_context(prometheus(work, jobs, (rules(work),)))
            yield Setup(namespace, api, targets)
        failed = request.session.testsfailed > failures
    finally:
        if failed:
            dump_namespace(namespace)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_the_ca_down_alert_fires_while_the_cas_pods_are_gone(setup: Setup) -> None:
    api, namespace = setup.api, setup.namespace
    seconds = int(FOR["HelloMTLSCADown"].removesuffix("s"))
    wait_until(
        "Prometheus to scrape the CA",
        lambda: api.query('hello_mtls_ca_cert_expiry_seconds{signing="true"}'),
        60,
        0.5,
    )
    # Until the first scrape the rule saw no CA: that pending alert goes at its next evaluation.
    wait_until(
        "HelloMTLSCADown quiet with the CA up", lambda: not alerts(api, "HelloMTLSCADown"), 30
    )
    up_since = time.monotonic()

    def quiet_past_its_for() -> bool:
        assert alerts(api, "HelloMTLSCADown") == [], "it fired with the CA up"
        return time.monotonic() - up_since > 2 * seconds

    wait_until("the rule to stay quiet for twice its for: with the CA up", quiet_past_its_for, 60)

    kubectl("scale", "deployment/hello-mtls-ca", "-n", namespace, "--replicas=0")
    scaled = time.monotonic()
    wait_until("HelloMTLSCADown to fire", lambda: firing(api, "HelloMTLSCADown"), 120, 0.5)
    fired = time.monotonic() - scaled
    assert fired >= seconds
    log(f"HelloMTLSCADown fired {fired:.1f} s after the CA was scaled to 0 (for: {seconds} s)")

    kubectl("scale", "deployment/hello-mtls-ca", "-n", namespace, "--replicas=1")
    back = time.monotonic()
    kubectl(
        "rollout",
        "status",
        "deployment/hello-mtls-ca",
        "-n",
        namespace,
        "--timeout=120s",
        timeout=130,
    )
    discover(namespace, setup.targets)
    wait_until(
        "HelloMTLSCADown to resolve",
        lambda: alerts(api, "HelloMTLSCADown") == [],
        180,
        0.5,
    )
    log(f"HelloMTLSCADown resolved {time.monotonic() - back:.1f} s after scaling the CA to 1")


def serial(namespace: str, secret: str) -> str:
    found = kubectl_json("get", "secret", secret, "-n", namespace)
    return str(found["metadata"]["annotations"][ANNOTATION_SERIAL])


def served(api: Prometheus, namespace: str, name: str) -> set[str]:
    query = (
        "hello_mtls_tls_certificate_not_after_timestamp_seconds"
        f'{{namespace="{namespace}",pod=~"{name}-.*",side="server"}}'
    )
    return {s["metric"]["serial"] for s in api.query(query)}


def test_the_stale_certificate_alert_fires_for_the_server_that_did_not_reload(
    setup: Setup, tmp_path: Path
) -> None:
    api, namespace = setup.api, setup.namespace
    before = {name: serial(namespace, f"{name}-tls") for name in ("fresh", "held")}

    def scraped() -> bool:
        in_secrets = api.query(
            "hello_mtls_operator_secret_not_after_timestamp_seconds"
            f'{{secret_namespace="{namespace}"}}'
        )
        held = {(s["metric"]["secret"], s["metric"]["serial"]) for s in in_secrets}
        return held == {(f"{n}-tls", before[n]) for n in before} and all(
            served(api, namespace, n) == {before[n]} for n in before
        )

    wait_until("Prometheus to scrape both servers and the operator's Secrets", scraped, 120, 0.5)
    hello_mtls = str(BIN / "hello-mtls")
    for name in before:
        subprocess.run([hello_mtls, "renew", f"{namespace}/{name}-tls"], check=True, timeout=120)
    after = {name: serial(namespace, f"{name}-tls") for name in before}
    assert all(after[n] != before[n] for n in before)
    renewed = time.monotonic()

    def held_fires() -> list[dict[str, Any]]:
        stale = firing(api, "HelloMTLSStaleCertificate")
        mine = [a for a in stale if a["labels"].get("namespace") == namespace]
        assert not [a for a in mine if a["labels"]["pod"].startswith("fresh-")], mine
        return [a for a in mine if a["labels"]["pod"].startswith("held-")]

    found = wait_until("HelloMTLSStaleCertificate to fire for held", held_fires, 300, 1)
    log(
        f"HelloMTLSStaleCertificate fired for held {time.monotonic() - renewed:.1f} s after"
        f" the renewal (for: {FOR['HelloMTLSStaleCertificate']})"
    )
    assert {a["labels"]["serial"] for a in found} == {before["held"]}
    assert served(api, namespace, "fresh") == {after["fresh"]}
    assert served(api, namespace, "held") == {before["held"]}

    done = subprocess.run(
        [hello_mtls, "status", "-n", namespace, "-o", "json", "--stale-after", "30"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = {row["secret"]: row for row in json.loads(done.stdout)["identities"]}
    assert rows["fresh-tls"]["served_state"] == "current", rows["fresh-tls"]
    assert rows["held-tls"]["served_state"] == "stale", rows["held-tls"]
    assert {p["serial"] for p in rows["held-tls"]["served"]} == {before["held"]}

    def held_events() -> list[dict[str, Any]]:
        found = kubectl_json("get", "events", "-n", namespace, f"--field-selector=reason={REASON}")[
            "items"
        ]
        assert not [e for e in found if e["involvedObject"]["name"].startswith("fresh-")], found
        return [e for e in found if e["involvedObject"]["name"].startswith("held-")]

    (event,) = wait_until(f"the {REASON} Event on held's pod", held_events, 180, 1)
    log(f"{REASON} Event on held {time.monotonic() - renewed:.1f} s after the renewal")
    assert event["type"] == "Warning"
    assert before["held"] in event["message"], event["message"]
    assert f"holds {after['held']}" in event["message"], event["message"]
    assert held_events() == [event]  # once per pod and serial, not every round (5 s)
    held = event["involvedObject"]["name"]
    assert stale_in_watch_metrics(namespace, tmp_path) == {(held, after["held"])}


def running_pods(app: str) -> list[str]:
    """The names of the install's running pods of ``app`` (``app.kubernetes.io/name``)."""
    selector = f"app.kubernetes.io/name={app}"
    pods = kubectl_json("get", "pods", "-n", PRODUCT_NAMESPACE, "-l", selector)
    return [p["metadata"]["name"] for p in pods["items"] if p["status"].get("phase") == "Running"]


def stale_in_watch_metrics(namespace: str, work: Path) -> set[tuple[str, str]]:
    """(pod, Secret serial) of every stale pod in the install's watch's ``/metrics``."""
    name = running_pods("hello-mtls-stale-watch")[0]
    with port_forward(
        PRODUCT_NAMESPACE, name, WATCH_METRICS_PORT, work / "port-forward-watch.log"
    ) as address:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    return {
        (sample.labels["pod"], sample.labels["serial"])
        for family in text_string_to_metric_families(text)
        if family.name == "hello_mtls_stale_watch_stale_pod_not_before_timestamp_seconds"
        for sample in family.samples
        if sample.labels["namespace"] == namespace
    }
