"""Scenario: two installs of hello-mtls in one cluster, federated (issue 24, "Federation across
trust domains"; docs/federation.md, "Two installs in one cluster").

Release ``fed-a`` (trust domain a.example, namespace fed-a) serves fed-a-apps only, release
``fed-b`` (b.example, fed-b) fed-b-apps only (``operator.watchNamespaces``): each has its own
root, its own cluster-scoped objects (named after the release) and admission policies that judge
its own namespaces only. A server of A allows one SPIFFE ID of B; a client of B calls it,
pinning the server's SPIFFE ID. Proven on the real cluster:

- refused without federation (the client does not trust A's root);
- refused when federated but not on the server's allow-list (another ServiceAccount of B);
- answered when federated and allowed;
- A's root rotation reaches B's Secret and B's client pod before A's server serves a certificate
  under the new root, B's Secret within the refresh hint of A's bundle (30 s) after A's bundle
  changed; the client fails no request through the whole rotation.

It installs both releases itself (``own_install``); hack/ci.sh runs it beside the upgrade
from the previous release, whose install is scoped to its own namespaces the same way.
"""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.waiting import wait_until
from mtls_ca.spiffe_bundle import REFRESH_HINT
from mtls_contract.marks import ANNOTATION_SERIAL
from support.cluster_api import ROOT, apply, dump_namespace, kubectl, kubectl_json, log
from support.installs import HELM, helm_run, provide_ca_volume, remove_ca_volume
from support.operator_workloads import (
    assert_client_never_failed,
    ca_cli,
    ca_status,
    client_lines,
    client_pod,
    idle_pod,
    rollout,
    server,
)
from support.pods import CERT_DIR

pytestmark = pytest.mark.own_install("installs two releases of its own, federated")

ROTATION_GRACE = "60s"
"""A's ``operator.rotationGrace``: longer than B's fetch on the hint plus its writes and the
kubelet, so that B's pods trust A's new root before A's first leaf under it exists (what the
rotation measures)."""
CALLER = "caller"
"""The ServiceAccount of B's clients that A's server allows."""


@dataclass(frozen=True)
class Install:
    release: str
    trust_domain: str

    @property
    def namespace(self) -> str:
        return self.release

    @property
    def apps(self) -> str:
        return f"{self.release}-apps"

    @property
    def bundle_file(self) -> str:
        """The file that holds this trust domain's roots in the other install's Secrets."""
        return f"federated-{self.trust_domain}.crt"

    def spiffe_id(self, service_account: str) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.apps}/sa/{service_account}"


A = Install("fed-a", "a.example")
B = Install("fed-b", "b.example")
SERVER_ID = A.spiffe_id("default")
URL = f"https://hello.{A.apps}.svc:8443/"


def _install(install: Install, values: dict[str, Any], *, upgrade: bool = False) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(values, file)
        file.flush()
        helm_run(
            "upgrade",
            *(() if upgrade else ("--install",)),
            install.release,
            str(ROOT / "charts" / "hello-mtls"),
            "--namespace",
            install.namespace,
            *(("--reuse-values",) if upgrade else ("--create-namespace",)),
            "-f",
            file.name,
            "--wait",
            "--timeout",
            "5m",
        )
    rollout("hello-mtls-operator", install.namespace, timeout=300)


def _on_both(action: Callable[[Install], None]) -> None:
    """``action`` for A and B at once (helm waits for pods; the two waits overlap)."""
    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(action, install) for install in (A, B)]:
            future.result()


def _values(install: Install) -> dict[str, Any]:
    """One CA pod and one operator replica each: two installs and the upgrade beside them share
    two cores."""
    return {
        "ca": {"trustDomain": install.trust_domain, "signers": {"replicas": 0}},
        "operator": {
            "replicas": 1,
            "watchNamespaces": [install.apps],
            "rotationGrace": ROTATION_GRACE if install is A else "30s",
        },
        "examples": {"enabled": False},
    }


def _federating(other: Install, roots: str) -> dict[str, Any]:
    return {
        "federation": {
            "trustDomains": [
                {
                    "trustDomain": other.trust_domain,
                    "bundleEndpointURL": f"https://hello-mtls-ca.{other.namespace}.svc/spiffe-bundle",
                    "profile": "https_web",
                    "bundle": roots,
                }
            ]
        }
    }


def _secret_data(namespace: str, name: str) -> dict[str, str]:
    """The Secret's files, decoded ({} while it does not exist)."""
    out = kubectl("-n", namespace, "get", "secret", name, "-o", "json", "--ignore-not-found")
    if not out.strip():
        return {}
    data = json.loads(out).get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def _server_serial() -> str:
    """The serial of A's server's certificate (its Secret's annotation)."""
    secret = kubectl_json("-n", A.apps, "get", "secret", "hello-tls")
    return str(secret["metadata"]["annotations"][ANNOTATION_SERIAL])


def _holds(namespace: str, secret: str, file: str) -> bool:
    return file in _secret_data(namespace, secret)


def _roots(text: str) -> int:
    return text.count("-----BEGIN CERTIFICATE-----")


def _pod_file(namespace: str, pod: str, name: str) -> str:
    return kubectl("-n", namespace, "exec", pod, "--", "cat", f"{CERT_DIR}/{name}", check=False)


def _call(pod: str, count: int) -> list[dict[str, Any]]:
    """``count`` requests from ``pod`` of B to A's server, pinning its SPIFFE ID: the client's
    JSON lines."""
    out = kubectl(
        "-n",
        B.apps,
        "exec",
        pod,
        "--",
        "hello-mtls-client",
        f"--url={URL}",
        f"--cert-dir={CERT_DIR}",
        f"--server-id={SERVER_ID}",
        f"--count={count}",
        "--interval=0.2",
        "--timeout=5",
        check=False,
        timeout=120,
    )
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _refused(pod: str, why: str) -> list[str]:
    """Three calls from ``pod``, each refused; their errors."""
    lines = _call(pod, 3)
    assert len(lines) == 3, lines
    assert [line for line in lines if not line.get("error")] == [], lines
    errors = [str(line["error"]) for line in lines]
    log(f"{pod} refused ({why}): {errors[0]}")
    return errors


def _reachable(pod: str) -> None:
    """A's Service takes TCP connections from ``pod`` (kube-proxy has programmed it), so that a
    refusal is a TLS one."""
    connect = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection((sys.argv[1], 8443), timeout=2).close()\n"
        "except OSError as e:\n"
        "    sys.exit(str(e))\n"
    )

    def connects() -> bool:
        command = ["python3", "-c", connect, f"hello.{A.apps}.svc"]
        done = subprocess.run(
            ["kubectl", "-n", B.apps, "exec", pod, "--", *command],
            capture_output=True,
            timeout=60,
            check=False,
        )
        return done.returncode == 0

    wait_until(f"A's Service to accept connections from {pod}", connects, 120, 2)


def _dump() -> None:
    for install in (A, B):
        dump_namespace(install.namespace)
        dump_namespace(install.apps)


def _uninstall() -> None:
    for install in (A, B):
        subprocess.run(
            [
                HELM,
                "uninstall",
                install.release,
                "-n",
                install.namespace,
                "--wait",
                "--timeout",
                "3m",
            ],
            check=False,
            timeout=240,
        )
    for install in (A, B):
        for namespace in (install.apps, install.namespace):
            kubectl(
                "delete", "namespace", namespace, "--ignore-not-found", check=False, timeout=240
            )


@pytest.fixture(scope="module")
def installs() -> Iterator[None]:
    for install in (A, B):
        for namespace in (install.namespace, install.apps):
            if kubectl("get", "namespace", namespace, "--ignore-not-found").strip():
                pytest.fail(f"namespace {namespace} exists: delete it first")
    volumes: list[tuple[Path, str]] = []
    try:
        try:
            for install in (A, B):
                kubectl("create", "namespace", install.apps)
                volume = provide_ca_volume(install.namespace)
                if volume is not None:
                    volumes.append((volume, install.namespace))
            _on_both(lambda install: _install(install, _values(install)))
        except BaseException:
            _dump()
            raise
        yield
    finally:
        _uninstall()
        for directory, namespace in volumes:
            remove_ca_volume(directory, namespace)


def test_federated_installs_refuse_strangers_answer_the_allowed_and_follow_a_rotation(
    installs: None,
) -> None:
    try:
        _scenario()
    except BaseException:
        _dump()
        raise


def _scenario() -> None:
    # A's server allows B's caller; B's pods: one of the caller, one of another ServiceAccount.
    hello = server(A.apps)
    container = hello[0]["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "HELLO_MTLS_ALLOW", "value": B.spiffe_id(CALLER)}]
    apply(hello, A.apps)
    kubectl("-n", B.apps, "create", "serviceaccount", CALLER)
    probe, stranger = idle_pod(B.apps, "probe"), idle_pod(B.apps, "stranger")
    probe["spec"]["serviceAccountName"] = CALLER
    apply([probe, stranger], B.apps)
    rollout("hello", A.apps, timeout=240)
    for pod in ("probe", "stranger"):
        kubectl(
            "-n",
            B.apps,
            "wait",
            "--for=condition=Ready",
            f"pod/{pod}",
            "--timeout=180s",
            timeout=200,
        )
    _reachable("probe")

    # 1. Not federated: B's client does not trust A's root.
    errors = _refused("probe", "not federated")
    assert all("certificate verify failed" in error.lower() for error in errors), errors

    # 2. Federate both ways, each trusting the other's bundle endpoint with its current roots.
    a_roots = _secret_data(A.apps, "hello-tls")["ca.crt"]
    b_roots = _secret_data(B.apps, "probe-tls")["ca.crt"]
    assert a_roots != b_roots
    others = {A: _federating(B, b_roots), B: _federating(A, a_roots)}
    _on_both(lambda install: _install(install, others[install], upgrade=True))
    for namespace, secret, file in (
        (A.apps, "hello-tls", B.bundle_file),
        (B.apps, "probe-tls", A.bundle_file),
        (B.apps, "stranger-tls", A.bundle_file),
    ):
        wait_until(
            f"{namespace}/{secret} to hold {file}",
            functools.partial(_holds, namespace, secret, file),
            180,
            2,
        )
    assert _secret_data(A.apps, "hello-tls")[B.bundle_file] == b_roots
    assert _secret_data(B.apps, "probe-tls")[A.bundle_file] == a_roots

    # 3. Federated and allowed: answered (once the kubelet has the files in the pods and the
    # server has reloaded them); every call of eight, so both server replicas answer.
    def answered() -> bool:
        lines = _call("probe", 8)
        return len(lines) == 8 and not any(line.get("error") for line in lines)

    wait_until("B's caller to be answered by A's server", answered, 180, 3)
    body = _call("probe", 1)[0]["body"]
    assert body.strip() == f"Hello, {B.spiffe_id(CALLER)}!", body

    # 4. Federated, not on the allow-list: A's server refuses B's other ServiceAccount, whose
    # pod trusts A's server as the caller's does.
    wait_until(
        "the stranger pod to hold A's roots",
        lambda: _pod_file(B.apps, "stranger", A.bundle_file) == a_roots,
        120,
        2,
    )
    errors = _refused("stranger", "not on the allow-list")
    assert not any("certificate verify failed" in error.lower() for error in errors), errors

    # 5. A's root rotation under traffic from B's caller.
    client = client_pod(B.apps, count=100_000, interval=0.5, server_namespace=A.apps)
    client["spec"]["serviceAccountName"] = CALLER
    client["spec"]["containers"][0]["command"].append(f"--server-id={SERVER_ID}")
    apply(client, B.apps)
    wait_until("the client's first answers", lambda: len(client_lines(B.apps)) >= 5, 180)
    seen = _rotation(_server_serial())
    log(
        f"A's new root: in B's Secret {seen['b_secret']:.0f} s and in B's client pod"
        f" {seen['b_pod']:.0f} s after A's bundle changed; A's server under the new root after"
        f" {seen['a_server']:.0f} s (refresh hint {REFRESH_HINT} s, A's grace {ROTATION_GRACE})"
    )
    assert seen["b_secret"] <= REFRESH_HINT + 10, seen
    assert seen["b_pod"] < seen["a_server"], seen

    def idle() -> bool:
        return str(ca_status(A.namespace)["phase"]) == "idle"

    wait_until("A's rotation back to idle", idle, 10 * 60, 5)
    wait_until(
        "B's client pod to hold A's new root alone",
        lambda: _roots(_pod_file(B.apps, "client", A.bundle_file)) == 1,
        180,
        3,
    )
    assert _pod_file(B.apps, "client", A.bundle_file) != a_roots
    assert_client_never_failed(B.apps, "A's root rotation")
    bodies = {line["body"].strip() for line in client_lines(B.apps)}
    assert bodies == {f"Hello, {B.spiffe_id(CALLER)}!"}, bodies


def _rotation(server_serial: str) -> dict[str, float]:
    """Start A's root rotation; seconds from A's bundle changing (the rotation's start) to A's
    new root in B's Secret, in B's client pod, and to A's server Secret re-issued."""
    ca_cli("rotate-root", "--from", "idle", namespace=A.namespace)
    started = time.monotonic()
    seen: dict[str, float] = {}
    checks: dict[str, Callable[[], bool]] = {
        "b_secret": lambda: _roots(_secret_data(B.apps, "client-tls").get(A.bundle_file, "")) == 2,
        "b_pod": lambda: _roots(_pod_file(B.apps, "client", A.bundle_file)) == 2,
        "a_server": lambda: _server_serial() != server_serial,
    }

    def all_seen() -> bool:
        for what, check in checks.items():
            if what not in seen and check():
                seen[what] = time.monotonic() - started
        return len(seen) == len(checks)

    wait_until("A's new root in B and A's server re-issued", all_seen, 10 * 60, 1)
    return seen
