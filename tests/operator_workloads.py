"""Helpers for the operator's e2e scenarios: kubectl, workloads that use hello-mtls, waiting.

Everything goes through ``kubectl`` against the cluster in ``KUBECONFIG``, with a timeout on
every call and every wait.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

from mtls_operator.certs import Inspection, inspect
from mtls_operator.tlssecret import decode_data

CA_NAMESPACE = "hello-mtls"
TAG = os.environ.get("IMAGE_TAG", "dev")
SERVER_IMAGE = f"hello-mtls/server:{TAG}"
CLIENT_IMAGE = f"hello-mtls/client:{TAG}"
_T = TypeVar("_T")


def kubectl(*args: str, stdin: str | None = None, timeout: float = 60) -> str:
    done = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def get(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(kubectl("-n", namespace, "get", kind, name, "-o", "json")))
    except RuntimeError as error:
        if "NotFound" in str(error):
            return None
        raise


def apply(manifest: dict[str, Any] | list[dict[str, Any]]) -> None:
    items = manifest if isinstance(manifest, list) else [manifest]
    kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )


def wait_for(what: str, check: Callable[[], _T | None], timeout: float, every: float = 1) -> _T:
    """Poll ``check`` until it returns something truthy; fail saying ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def secret_inspection(name: str, namespace: str) -> tuple[Inspection, dict[str, Any]] | None:
    """The inspected content of a Secret and the Secret, or None while it does not exist."""
    secret = get("secret", name, namespace)
    if secret is None:
        return None
    return inspect(decode_data(secret)), secret


def ca_status() -> dict[str, Any]:
    """``hello-mtls-ca status`` run in the CA pod."""
    out = kubectl(
        "-n",
        CA_NAMESPACE,
        "exec",
        "deploy/hello-mtls-ca",
        "--",
        "hello-mtls-ca",
        "status",
        "--state",
        f"k8s:{CA_NAMESPACE}/hello-mtls-ca-state",
    )
    return dict(json.loads(out))


def _tls_volume(secret: str) -> tuple[dict[str, Any], dict[str, Any]]:
    volume = {"name": "tls", "secret": {"secretName": secret}}
    mount = {"name": "tls", "mountPath": "/var/run/hello-mtls", "readOnly": True}
    return volume, mount


_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}


def server(namespace: str, *, duration: str | None = None) -> list[dict[str, Any]]:
    """A hello-mtls server Deployment ``hello`` and its Service, with a hello-mtls certificate."""
    annotations = {"hello-mtls.dev/name": f"hello.{namespace}.svc"}
    if duration:
        annotations["hello-mtls.dev/duration"] = duration
    volume, mount = _tls_volume("hello-tls")
    probe = ["hello-mtls-server", "--probe", "--bind=0.0.0.0:8443"]
    labels = {"app": "hello"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "hello", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": {
                        "securityContext": _SECURITY,
                        "containers": [
                            {
                                "name": "server",
                                "image": SERVER_IMAGE,
                                "imagePullPolicy": "IfNotPresent",
                                "args": ["hello-mtls-server", "--bind=0.0.0.0:8443"],
                                "ports": [{"containerPort": 8443}],
                                "readinessProbe": {"exec": {"command": probe}, "periodSeconds": 2},
                                "volumeMounts": [mount],
                            }
                        ],
                        "volumes": [volume],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "hello", "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": 8443, "targetPort": 8443}]},
        },
    ]


def client_pod(
    namespace: str, *, count: int, interval: float, duration: str | None = None
) -> dict[str, Any]:
    """A client pod that makes ``count`` requests to the server and exits 1 if any failed."""
    annotations = {"hello-mtls.dev/name": f"client.{namespace}.svc"}
    if duration:
        annotations["hello-mtls.dev/duration"] = duration
    volume, mount = _tls_volume("client-tls")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client", "namespace": namespace, "annotations": annotations},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": _SECURITY,
            "containers": [
                {
                    "name": "client",
                    "image": CLIENT_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "args": [
                        "hello-mtls-client",
                        f"--url=https://hello.{namespace}.svc:8443/",
                        f"--count={count}",
                        f"--interval={interval}",
                    ],
                    "volumeMounts": [mount],
                }
            ],
            "volumes": [volume],
        },
    }


def idle_pod(namespace: str, name: str, dns_name: str) -> dict[str, Any]:
    """A pod that only waits, with a hello-mtls certificate mounted."""
    volume, mount = _tls_volume(f"{name}-tls")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {
                "hello-mtls.dev/name": dns_name,
                "hello-mtls.dev/secret": f"{name}-tls",
            },
        },
        "spec": {
            "securityContext": _SECURITY,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "idle",
                    "image": CLIENT_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-c", "import time; time.sleep(3600)"],
                    "volumeMounts": [mount],
                }
            ],
            "volumes": [volume],
        },
    }


def phase(pod: str, namespace: str) -> str:
    found = get("pod", pod, namespace)
    return "" if found is None else str(found.get("status", {}).get("phase", ""))


def client_lines(namespace: str) -> list[dict[str, Any]]:
    """The JSON lines the client pod logged."""
    lines = []
    for line in kubectl("-n", namespace, "logs", "client", timeout=120).splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def rollout(deployment: str, namespace: str, timeout: float = 180) -> None:
    kubectl(
        "-n",
        namespace,
        "rollout",
        "status",
        f"deploy/{deployment}",
        f"--timeout={int(timeout)}s",
        timeout=timeout + 10,
    )
