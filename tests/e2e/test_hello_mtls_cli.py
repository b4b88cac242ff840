"""The ``hello-mtls`` command on the installed product, run as a user runs it: the console
script, and the same through kubectl's plugin lookup (``kubectl hello-mtls``).

``check`` passes every check (its probe pod finds the CA's signing port closed to it, and is
deleted), ``status -o json`` lists a workload's identity with the serial its
Secret holds, and ``renew`` makes the operator issue a new serial into the same Secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.waiting import wait_until
from mtls_contract.marks import ANNOTATION_RENEW, ANNOTATION_SERIAL
from support.cluster_api import apply, kubectl, kubectl_json, log
from support.pods import deployment

BIN = Path(sys.executable).parent
COMMAND = str(BIN / "hello-mtls")


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )


def test_kubectl_hello_mtls_check_passes_every_check(installed: str) -> None:
    def passing() -> str | None:
        done = run("kubectl", "hello-mtls", "check")
        log(done.stdout + done.stderr)
        return done.stdout if done.returncode == 0 else None

    out = wait_until("hello-mtls check to pass", passing, timeout=180, interval=5)
    lines = [line for line in out.splitlines() if line.startswith(("✓", "✗"))]
    assert lines and all(line.startswith("✓") for line in lines), out
    for expected in (
        "✓ Kubernetes API v1.",
        "✓ ValidatingAdmissionPolicy hello-mtls-names and its binding",
        "✓ MutatingAdmissionPolicy hello-mtls-wiring and its binding",
        "✓ an operator leader: hello-mtls-operator-",
        "✓ the CA serves a chain to its roots for hello-mtls-ca.hello-mtls.svc",
        "✓ NetworkPolicy hello-mtls-ca",
        "✓ NetworkPolicy enforced: a pod without the operator's labels cannot reach"
        " hello-mtls-ca.hello-mtls.svc:8444",
    ):
        assert any(line.startswith(expected) for line in lines), (expected, out)
    probes = kubectl_json(
        "get", "pods", "-n", installed, "-l", "app.kubernetes.io/name=hello-mtls-check-probe"
    )["items"]
    assert [p for p in probes if not p["metadata"].get("deletionTimestamp")] == []


def status(namespace: str) -> dict[str, Any]:
    done = run(COMMAND, "status", "-n", namespace, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_status_lists_the_identity_and_renew_changes_its_serial(namespace: str) -> None:
    name = f"cli.{namespace}.svc"
    workload = deployment(
        "cli", replicas=2, annotations={"hello-mtls.dev/name": name}, secret="cli-tls"
    )
    apply(workload, namespace)
    kubectl("rollout", "status", "deployment/cli", "-n", namespace, "--timeout=180s", timeout=200)

    def serial() -> str:
        secret = kubectl_json("get", "secret", "cli-tls", "-n", namespace)
        return str(secret["metadata"]["annotations"][ANNOTATION_SERIAL])

    def listed() -> dict[str, Any] | None:
        rows = status(namespace)["identities"]
        return rows[0] if len(rows) == 1 and len(rows[0]["pods"]) == 2 else None

    row = wait_until("status to list both pods of cli-tls", listed, timeout=60)
    before = serial()
    assert (row["namespace"], row["name"], row["mode"], row["secret"]) == (
        namespace,
        name,
        "secret",
        "cli-tls",
    )
    assert row["serial"] == before and row["not_after"] and row["next_renewal"]
    assert all(pod.startswith("cli-") for pod in row["pods"])

    done = run(COMMAND, "renew", f"{namespace}/cli-tls")
    assert done.returncode == 0, done.stderr
    after = serial()
    assert after != before
    assert done.stdout.splitlines()[-1] == f"re-issued: serial {after}"
    secret = kubectl_json("get", "secret", "cli-tls", "-n", namespace)
    assert ANNOTATION_RENEW not in secret["metadata"]["annotations"]
    assert status(namespace)["identities"][0]["serial"] == after
