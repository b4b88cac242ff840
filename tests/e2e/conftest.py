"""The e2e harness: the product installed on the cluster in ``KUBECONFIG``.

Works against any cluster (kind for users, the local cluster here). Settings, from the
environment:

- ``KUBECONFIG``: the cluster (required).
- ``E2E_INSTALL``: ``helm`` (default; ``charts/hello-mtls``) or ``kubectl`` (``k8s/``, applied
  over the previous release's ``k8s/`` under traffic: `support.upgrades`; it needs
  ``hack/previous-release.sh build``, and its images on the nodes).
- ``E2E_IMAGE_LOADER``: a command that takes image names and makes them available to the
  cluster's nodes, run once before installing, e.g. ``kind load docker-image`` or
  ``hack/load-images.sh``. Unset: the images are assumed to be there already.
- ``E2E_IMAGE_TAG``: tag of ``hello-mtls/{ca,server,client}`` (default ``dev``).
- ``HELM``: the helm binary (default ``helm``).
- ``E2E_LOCAL_VOLUMES``: only for a cluster that cannot provision volumes (no default
  StorageClass with a provisioner, like the local cluster): a directory on its only node where
  the run makes a ``local`` PersistentVolume for the CA's state claim (``make e2e`` passes
  /var/lib/hello-mtls-cluster/volumes). kind provisions volumes itself and needs none.

Each scenario gets its own namespace; when a scenario fails, the pods, Events and container logs
of its namespace and of the product's namespace are printed.

``make e2e`` runs the modules side by side (pytest-xdist, ``-n``): the first worker that needs
the product installs it, under a lock in a directory the controller gives every worker, and the
controller uninstalls it once every worker is done; `support.sharing` keeps the modules that
disturb the shared install apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtls_contract.durations import parse_duration
from support.cluster_api import (
    APP_METRICS_PORT,
    IMAGE_TAG,
    IMAGES,
    PRODUCT_NAMESPACE,
    RELEASE,
    ROOT,
    dump_namespace,
    kubectl,
    kubectl_json,
    log,
)
from support.installs import load_images, provide_ca_volume, remove_ca_volume
from support.name_cases import ALLOWED_IPS, EXTRA_ALLOWED_NAMES, MINIMUM_DURATION
from support.sharing import (
    ALONE,
    Lanes,
    SharingScheduling,
    keep_own_installs_apart,
    module_of,
    order,
    write_long_running,
)
from support.upgrades import upgrade_k8s_under_traffic

SHARED = pytest.StashKey[Path]()
"""The run's directory every worker sees: the install's record and lock, the sharing locks."""
LANES = pytest.StashKey[Lanes]()
_CURRENT = pytest.StashKey[contextlib.ExitStack]()
SHARED_INPUT = "hello_mtls_e2e_shared"


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _is_worker(config):
        shared = config.workerinput.get(SHARED_INPUT)  # type: ignore[attr-defined]
        if shared is None:
            raise pytest.UsageError(
                "the e2e modules under pytest-xdist need tests/e2e on the command line"
                " (make e2e E2E_TESTS=...): the controller loads this conftest from it"
            )
        config.stash[SHARED] = Path(shared)
    else:
        config.stash[SHARED] = Path(tempfile.mkdtemp(prefix="hello-mtls-e2e-"))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, in the controller: give each worker the run's shared directory."""
    node.workerinput[SHARED_INPUT] = str(node.config.stash[SHARED])


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> SharingScheduling | None:
    """pytest-xdist, in the controller: ``--dist loadfile`` keeps long-running modules apart."""
    if config.getvalue("dist") != "loadfile":
        return None
    return SharingScheduling(config, log, config.stash[SHARED])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep_own_installs_apart(config, items)
    order(items)
    write_long_running(config.stash[SHARED], items)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The alone modules of this run: those left after deselection (``-k``)."""
    alone = {module_of(item) for item in session.items if item.get_closest_marker(ALONE)}
    session.config.stash[LANES] = Lanes(session.config.stash[SHARED], alone)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Enter the module's lane before its first test and leave it after its last one (outside
    the tests' timeouts: waiting for the alone modules is not a test's time)."""
    module, session = module_of(item), item.session
    if _CURRENT not in session.stash:
        lane = contextlib.ExitStack()
        lane.enter_context(item.config.stash[LANES].module(module))
        session.stash[_CURRENT] = lane
    try:
        return (yield)
    finally:
        if nextitem is None or module_of(nextitem) != module:
            session.stash[_CURRENT].close()
            del session.stash[_CURRENT]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Repeat what the passed scenarios narrated (`log`: failover times, latencies), which the
    workers' capture would otherwise swallow, so that a CI log keeps the figures."""
    lines = [
        f"{report.nodeid.rpartition('::')[2]}: {line}"
        for report in terminalreporter.stats.get("passed", [])
        for line in report.capstderr.splitlines()
        if line.startswith("[e2e ")
    ]
    if lines:
        terminalreporter.section("what the passed scenarios logged")
        for line in lines:
            terminalreporter.write_line(line)


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


def _serves_pod_certificates() -> bool:
    """Whether the API server serves PodCertificateRequests (Kubernetes 1.35+, v1 from 1.37)."""
    served = kubectl("api-resources", "--api-group=certificates.k8s.io", "-o", "name")
    return "podcertificaterequests.certificates.k8s.io" in served.split()


def _install(method: str) -> None:
    if method == "helm":
        helm = os.environ.get("HELM", "helm")
        # The Helm pass turns the pod-certificate signer on where the cluster has the API;
        # k8s/ renders the defaults (off), so the kubectl pass runs without it.
        signer = _serves_pod_certificates()
        log(
            f"installing with {helm} (chart charts/hello-mtls, images tag {IMAGE_TAG},"
            f" pod-certificate signer {'on' if signer else 'off: the cluster has no such API'})"
        )
        subprocess.run(
            [
                helm,
                "upgrade",
                "--install",
                RELEASE,
                str(ROOT / "charts" / "hello-mtls"),
                "--namespace",
                PRODUCT_NAMESPACE,
                "--create-namespace",
                "--set",
                f"images.tag={IMAGE_TAG}",
                "--set",
                f"certificates.minDuration={MINIMUM_DURATION}",
                "--set-json",
                f"operator.extraAllowedNames={json.dumps(EXTRA_ALLOWED_NAMES)}",
                "--set-json",
                f"operator.allowedIPs={json.dumps(ALLOWED_IPS)}",
                "--set",
                f"podCertificates.enabled={str(signer).lower()}",
                # 1-hour pod certificates refreshed 10 minutes after notBefore (the API's
                # earliest), so the root rotation across modes fits the pass.
                "--set",
                "podCertificates.refreshFraction=0.1",
                # The stale-certificate watch (off by default), for tests/e2e/test_alerts.py:
                # rounds every 5 s, the example servers' metrics port, stale 150 s after
                # notBefore (90 s after signing: past the kubelet's volume update).
                "--set",
                "staleWatch.enabled=true",
                "--set",
                "staleWatch.interval=5",
                "--set",
                "staleWatch.staleAfter=150",
                "--set-json",
                f"staleWatch.metricsPorts=[{APP_METRICS_PORT}]",
                "--wait",
                "--timeout",
                "5m",
            ],
            check=True,
            cwd=ROOT,
            timeout=420,
        )
    elif method == "kubectl":
        # Installed as an upgrade: the previous release's k8s/ under traffic, then
        # `kubectl apply -f k8s/` over it, checked (docs/upgrades.md); the pass runs on the result.
        upgrade_k8s_under_traffic()
        _lower_minimum_duration(MINIMUM_DURATION)
        _set_policy_allowances()
    else:
        raise pytest.UsageError(f"E2E_INSTALL must be helm or kubectl, not {method!r}")
    for deployment in ("hello-mtls-ca", "hello-mtls-operator"):
        kubectl(
            "rollout",
            "status",
            f"deployment/{deployment}",
            "-n",
            PRODUCT_NAMESPACE,
            "--timeout=300s",
            timeout=320,
        )


def _lower_minimum_duration(value: str) -> None:
    """Change the installed Deployments as a user of k8s/ would (what ``--set`` is for Helm).

    The CA has already created its state with the default bound by then: its restart with the
    new argument must carry the change into the state.
    """
    log(f"lowering the minimum certificate lifetime to {value} on the installed Deployments")
    kubectl(
        "rollout",
        "status",
        "deployment/hello-mtls-ca",
        "-n",
        PRODUCT_NAMESPACE,
        "--timeout=300s",
        timeout=320,
    )
    ca = kubectl_json("get", "deployment/hello-mtls-ca", "-n", PRODUCT_NAMESPACE)
    args = ca["spec"]["template"]["spec"]["containers"][0]["args"]
    index = next(i for i, arg in enumerate(args) if arg.startswith("--min-duration="))
    patch = [
        {
            "op": "replace",
            "path": f"/spec/template/spec/containers/0/args/{index}",
            "value": f"--min-duration={value}",
        }
    ]
    kubectl(
        "patch",
        "deployment/hello-mtls-ca",
        "-n",
        PRODUCT_NAMESPACE,
        "--type=json",
        "-p",
        json.dumps(patch),
    )
    kubectl(
        "set",
        "env",
        "deployment/hello-mtls-operator",
        "-n",
        PRODUCT_NAMESPACE,
        f"HELLO_MTLS_MIN_DURATION={value}",
    )


def _set_policy_allowances() -> None:
    """Give the admission policy of k8s/ what ``--set`` gives the chart's (a user edits its
    variables): the lower minimum and the allowances of name_cases' allowed namespace."""
    log("setting the admission policy's minimum lifetime and allowances")
    policy = kubectl_json("get", "validatingadmissionpolicy", "hello-mtls-names")
    values = {
        "minimum": str(int(parse_duration(MINIMUM_DURATION).total_seconds())),
        "extraAllowedNames": json.dumps(EXTRA_ALLOWED_NAMES),
        "allowedIPs": json.dumps(ALLOWED_IPS),
    }
    patch = [
        {"op": "replace", "path": f"/spec/variables/{i}/expression", "value": values[v["name"]]}
        for i, v in enumerate(policy["spec"]["variables"])
        if v["name"] in values
    ]
    assert len(patch) == len(values), policy["spec"]["variables"]
    kubectl(
        "patch",
        "validatingadmissionpolicy",
        "hello-mtls-names",
        "--type=json",
        "-p",
        json.dumps(patch),
    )


def _uninstall(method: str) -> None:
    log(f"uninstalling ({method})")
    if method == "helm":
        subprocess.run(
            [
                os.environ.get("HELM", "helm"),
                "uninstall",
                RELEASE,
                "-n",
                PRODUCT_NAMESPACE,
                "--wait",
                "--timeout",
                "3m",
            ],
            check=False,
            timeout=240,
        )
    else:
        kubectl(
            "delete",
            "-f",
            str(ROOT / "k8s"),
            "--ignore-not-found",
            "--wait=true",
            check=False,
            timeout=240,
        )
    kubectl(
        "delete",
        "namespace",
        PRODUCT_NAMESPACE,
        "--ignore-not-found",
        "--wait=true",
        check=False,
        timeout=240,
    )


@pytest.fixture(scope="session")
def installed(request: pytest.FixtureRequest) -> str:
    """The product installed once per run (by the first worker that needs it; the controller
    uninstalls it at the end); the value is its namespace."""
    if not os.environ.get("KUBECONFIG"):
        raise pytest.UsageError("the e2e tier needs KUBECONFIG pointing at a cluster")
    shared = request.config.stash[SHARED]
    with (shared / "install.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = _read_record(shared)
        if record is None:
            record = {"method": os.environ.get("E2E_INSTALL", "helm"), "state": "failed"}
            try:
                kubectl("version", timeout=30)
                load_images(IMAGES)
                volume = provide_ca_volume()
                record["volume"] = str(volume) if volume else None
                _install(record["method"])
                record["state"] = "installed"
            except Exception:
                dump_namespace(PRODUCT_NAMESPACE)
                raise
            finally:
                (shared / "install.json").write_text(json.dumps(record))
    if record["state"] != "installed":
        pytest.fail("the install failed (its output is in the first test that needed it)")
    return PRODUCT_NAMESPACE


def _read_record(shared: Path) -> dict[str, Any] | None:
    path = shared / "install.json"
    return json.loads(path.read_text()) if path.exists() else None


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In the controller (or a run without workers), after every test: uninstall."""
    if _is_worker(session.config):
        return
    shared = session.config.stash[SHARED]
    record = _read_record(shared)
    if record is not None and record["state"] == "installed":
        if session.testsfailed:
            dump_namespace(PRODUCT_NAMESPACE)
        _uninstall(record["method"])
        if record["volume"] is not None:
            remove_ca_volume(Path(record["volume"]))
    shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, installed: str) -> Iterator[str]:
    """A fresh namespace for one scenario, deleted afterwards (dumped first if it failed)."""
    base = request.node.name.removeprefix("test_").replace("_", "-")[:40].strip("-")
    name = f"e2e-{base}-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    log(f"namespace {name}")
    yield name
    if _failed(request):
        dump_namespace(name)
        dump_namespace(installed)
    kubectl("delete", "namespace", name, "--wait=false", check=False)
