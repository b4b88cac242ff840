"""Cluster helpers for the e2e scenarios: kubectl and debugging output."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_NAMESPACE = "hello-mtls"
RELEASE = "hello-mtls"
IMAGE_TAG = os.environ.get("E2E_IMAGE_TAG", "dev")
IMAGES = [f"hello-mtls/{name}:{IMAGE_TAG}" for name in ("ca", "server", "client")]
APP_METRICS_PORT = 9102
"""The ``--metrics-port`` of the e2e's example servers, which the shared install's
stale-certificate watch may read (tests/e2e/conftest.py)."""


def log(message: str) -> None:
    """Narrate a long step (pytest shows it with -s, and in the failure report)."""
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def kubectl(*args: str, check: bool = True, timeout: float = 60, stdin: str | None = None) -> str:
    """Run kubectl; return stdout. Raises with stderr in the message when ``check`` fails."""
    result = subprocess.run(
        ["kubectl", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {shlex.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def kubectl_json(*args: str) -> Any:
    """Run ``kubectl ... -o json`` and parse it."""
    return json.loads(kubectl(*args, "-o", "json"))


def apply(manifest: dict[str, Any] | list[dict[str, Any]], namespace: str) -> None:
    """``kubectl apply`` one object or a list of objects into ``namespace``."""
    items = manifest if isinstance(manifest, list) else [manifest]
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    kubectl("apply", "-n", namespace, "-f", "-", stdin=body)


def dump_namespace(namespace: str) -> None:
    """Print what a person debugging a failed scenario needs: pods, Events, logs."""
    print(f"\n===== namespace {namespace}: pods =====", file=sys.stderr)
    print(kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False), file=sys.stderr)
    print(f"===== namespace {namespace}: events =====", file=sys.stderr)
    print(
        kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False),
        file=sys.stderr,
    )
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json", check=False) or "{}")
    for pod in pods.get("items", []):
        name = pod["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            print(f"===== logs {namespace}/{name}/{container['name']} =====", file=sys.stderr)
            print(
                kubectl(
                    "logs",
                    "-n",
                    namespace,
                    name,
                    "-c",
                    container["name"],
                    "--tail=60",
                    check=False,
                ),
                file=sys.stderr,
            )
