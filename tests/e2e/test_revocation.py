"""Revocation end to end, in both modes: an example server and two clients calling it; an admin
revokes one client's certificate with ``hello-mtls revoke --cert`` (the CLI runs
``hello-mtls-ca revoke`` in the root holder's pod through ``pods/exec``), holding nothing but the
chart's Role ``hello-mtls-ca-admin`` (refused without it). Measured: the seconds
from the revocation until every server pod refuses that certificate (≤ 60 s), while the other
client's requests keep succeeding (0 failed); then the revoked client's next certificate works
(Secret mode: the operator re-issues it at once; pod-certificate mode: the pod is replaced).

The refusal is probed in each server pod, on its loopback, with a copy of the revoked
credential: the revoked client itself may take its new certificate before the servers their new
CRL, and would then never show a refusal.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.waiting import wait_until
from mtls_contract.marks import POD_CERTIFICATE, SECRET_MODE
from support.cluster_api import PRODUCT_NAMESPACE, apply, kubectl, kubectl_json, log
from support.operator_workloads import client_lines, client_pod, rollout, server
from support.pods import CERT_DIR

BIN = Path(sys.executable).parent
CREDENTIAL = ("tls.crt", "tls.key", "ca.crt")
BOUND = 60.0
"""Seconds from the revocation to every server pod refusing the certificate (issue 23)."""

# In each server pod: GET / on its loopback with the credential on stdin; "accepted" or why not.
PROBE = """
import json, os, shutil, socket, ssl, sys, tempfile
files, directory = json.load(sys.stdin), tempfile.mkdtemp()
try:
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(os.path.join(directory, "ca.crt"))
    context.load_cert_chain(os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key"))
    with socket.create_connection(("127.0.0.1", 8443), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=sys.argv[1]) as tls:
            tls.sendall(b"GET / HTTP/1.1\\r\\nHost: hello\\r\\nConnection: close\\r\\n\\r\\n")
            answer = tls.recv(4096)
    print("accepted" if answer else "refused: closed without an answer")
except (ssl.SSLError, OSError) as error:
    print(f"refused: {error}")
finally:
    shutil.rmtree(directory)
"""


@pytest.fixture(params=[SECRET_MODE, POD_CERTIFICATE])
def mode(request: pytest.FixtureRequest, installed: str) -> str:
    if request.param == POD_CERTIFICATE and not kubectl(
        "get", "clusterrole", "hello-mtls-pod-certificate-signer", "--ignore-not-found"
    ):
        pytest.skip("the install has podCertificates.enabled off (k8s/ renders the defaults)")
    return str(request.param)


def _answered(namespace: str, name: str) -> list[dict[str, Any]] | None:
    lines = client_lines(namespace, name)
    return lines if any(line.get("status") == 200 for line in lines) else None


def _credential(namespace: str, name: str, mode: str) -> dict[str, str]:
    """What client ``name`` presents now: its Secret, or its pod's projected files."""
    if mode == SECRET_MODE:
        data = kubectl_json("get", "secret", f"{name}-tls", "-n", namespace)["data"]
        return {f: base64.b64decode(data[f]).decode() for f in CREDENTIAL}
    return {
        f: kubectl("exec", "-n", namespace, name, "--", "cat", f"{CERT_DIR}/{f}")
        for f in CREDENTIAL
    }


def _probe(namespace: str, credential: dict[str, str]) -> dict[str, str]:
    """Server pod → what it answered ``credential`` (``accepted`` or ``refused: ...``)."""
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", "app=hello")["items"]
    running = [
        p["metadata"]["name"]
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    return {
        name: kubectl(
            *("exec", "-i", "-n", namespace, name, "--", "python3", "-c", PROBE),
            f"hello.{namespace}.svc",
            stdin=json.dumps(credential),
        ).strip()
        for name in running
    }


def _kubeconfig(namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig of the cluster with the token of ServiceAccount ``account``: an admin
    who holds nothing but what RBAC grants that account."""
    token = kubectl("create", "token", account, "-n", namespace, "--duration=10m").strip()
    current = kubectl_json("config", "view", "--raw", "--minify", "--flatten", "-o", "json")
    cluster = current["clusters"][0]
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": account,
    }
    path.write_text(json.dumps(document))
    return path


def _hello_mtls(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hello-mtls"), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        },
    )


@pytest.fixture
def ca_admin(namespace: str, tmp_path: Path) -> Iterator[Path]:
    """The kubeconfig of an admin bound to the chart's Role ``hello-mtls-ca-admin`` and to
    nothing else; the binding is removed afterwards."""
    kubectl("create", "serviceaccount", "revoker", "-n", namespace)
    kubeconfig = _kubeconfig(namespace, "revoker", tmp_path / "kubeconfig")
    unbound = _hello_mtls(kubeconfig, "revoke", "--serial", "1")
    assert unbound.returncode == 1 and "the Role hello-mtls-ca-admin" in unbound.stderr, unbound
    binding = f"{namespace}-ca-admin"
    kubectl(
        *("create", "rolebinding", binding, "-n", PRODUCT_NAMESPACE),
        *("--role=hello-mtls-ca-admin", f"--serviceaccount={namespace}:revoker"),
    )
    try:
        yield kubeconfig
    finally:
        kubectl("delete", "rolebinding", binding, "-n", PRODUCT_NAMESPACE, "--ignore-not-found")


def test_a_revoked_client_is_refused_by_every_server_within_a_minute(
    mode: str, namespace: str, ca_admin: Path, tmp_path: Path
) -> None:
    apply(server(namespace, mode=mode), namespace)
    rollout("hello", namespace, timeout=240)
    for name in ("alice", "bob"):
        apply(client_pod(namespace, count=100000, interval=0.5, mode=mode, name=name), namespace)
    wait_until("alice to be answered", lambda: _answered(namespace, "alice"), timeout=240)
    wait_until("bob to be answered", lambda: _answered(namespace, "bob"), timeout=240)

    revoked = _credential(namespace, "alice", mode)
    baseline = _probe(namespace, revoked)
    assert len(baseline) == 2 and set(baseline.values()) == {"accepted"}, baseline
    before = [line for line in client_lines(namespace, "alice") if line.get("status") == 200]
    old_serial = before[-1]["client_serial"]
    (tmp_path / "tls.crt").write_text(revoked["tls.crt"])
    bob_before = len(client_lines(namespace, "bob"))

    start = time.monotonic()
    done = _hello_mtls(
        ca_admin, "revoke", "--cert", str(tmp_path / "tls.crt"), "--reason", "keyCompromise"
    )
    assert done.returncode == 0, done.stderr
    log(done.stdout.strip())

    def everyone_refuses() -> dict[str, str] | None:
        answers = _probe(namespace, revoked)
        return (
            answers
            if len(answers) == 2 and all(a.startswith("refused") for a in answers.values())
            else None
        )

    answers = wait_until(
        "every server pod to refuse the revoked certificate",
        everyone_refuses,
        timeout=180,
        interval=2,
    )
    seconds = time.monotonic() - start
    log(
        f"{mode} mode: every server pod refused the revoked certificate {seconds:.1f} s"
        f" after hello-mtls revoke ({answers})"
    )
    assert seconds <= BOUND

    # The revoked client's next certificate works.
    if mode == POD_CERTIFICATE:  # the kubelet's certificate: a new pod gets a new key and one
        kubectl("delete", "pod", "alice", "-n", namespace, "--wait=true", timeout=120)
        apply(client_pod(namespace, count=100000, interval=0.5, mode=mode, name="alice"), namespace)

    def renewed() -> list[dict[str, Any]] | None:
        lines = client_lines(namespace, "alice")
        return [
            line
            for line in lines
            if line.get("status") == 200 and line["client_serial"] != old_serial
        ] or None

    served = wait_until("alice's next certificate to be answered", renewed, timeout=180, interval=2)
    log(f"{mode} mode: alice answered with her next certificate {served[0]['client_serial']}")

    # Bob was never refused, from his first request to after alice's next certificate.
    lines = client_lines(namespace, "bob")
    failed = [line for line in lines if line.get("error")]
    log(f"{mode} mode: bob made {len(lines)} requests, {len(failed)} failed")
    assert failed == [] and len(lines) > bob_before
