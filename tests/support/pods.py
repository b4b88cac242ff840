"""Small builders for the objects the scenarios create."""

from __future__ import annotations

from typing import Any

from support.cluster_api import IMAGE_TAG

CERT_DIR = "/var/run/hello-mtls"
_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def pod(
    name: str,
    *,
    annotations: dict[str, str] | None = None,
    secret: str | None = None,
    command: list[str] | None = None,
    restart: str = "Never",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod running the client image; mounts ``secret`` at the cert dir when given."""
    container: dict[str, Any] = {
        "name": "main",
        "image": f"hello-mtls/client:{IMAGE_TAG}",
        "imagePullPolicy": "IfNotPresent",
        "command": command or ["python3", "-c", "import time; time.sleep(3600)"],
        "securityContext": _SECURITY,
    }
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 1,
        "containers": [container],
    }
    if secret:
        container["volumeMounts"] = [{"name": "tls", "mountPath": CERT_DIR, "readOnly": True}]
        spec["volumes"] = [{"name": "tls", "secret": {"secretName": secret}}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
        "spec": spec,
    }


def deployment(
    name: str, *, replicas: int, annotations: dict[str, str], secret: str | None
) -> dict[str, Any]:
    """A Deployment of annotated pods that mount their Secret (``None``: no volume written by
    hand, the wiring policy adds it)."""
    spec = pod(name, annotations=annotations, secret=secret, restart="Always")["spec"]
    template = {"metadata": {"labels": {"app": name}, "annotations": annotations}, "spec": spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template,
        },
    }
