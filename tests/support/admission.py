"""What the API server's admission policies make of an object: refused, and with which message."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from support.cluster_api import kubectl

DENIED = "denied request: "
SIGNER_ROLE = "hello-mtls-pod-certificate-signer"


def names_policy_refusal(*args: str, stdin: str | None = None) -> str | None:
    """Run ``kubectl args``: None if it succeeds, else the names policy's message (what follows
    "denied request: " in kubectl's error); any other failure fails the test."""
    result = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    if result.returncode == 0:
        return None
    error = result.stderr.strip()
    assert DENIED in error and "ValidatingAdmissionPolicy 'hello-mtls-names'" in error, error
    return error.split(DENIED, 1)[1]


def admission_error(
    manifest: dict[str, Any], namespace: str, *, dry_run: bool = True
) -> str | None:
    """Create (or, without ``dry_run``, ``kubectl apply``) ``manifest``: None if admitted, else
    the policy's message."""
    verb = ["create", "--dry-run=server"] if dry_run else ["apply"]
    return names_policy_refusal(
        *verb, "-n", namespace, "-o", "name", "-f", "-", stdin=json.dumps(manifest)
    )


def annotation_update_error(
    pod: str,
    namespace: str,
    annotations: dict[str, str | None],
    *,
    subresource: str | None = None,
    dry_run: bool = True,
) -> str | None:
    """Change annotations of the existing ``pod`` (None removes one) with a merge patch, through
    ``subresource`` (``status``) if given: None if admitted, else the names policy's message."""
    extra = ["--dry-run=server"] if dry_run else []
    if subresource:
        extra.append(f"--subresource={subresource}")
    patch = json.dumps({"metadata": {"annotations": annotations}})
    return names_policy_refusal(
        "patch", "pod", pod, "-n", namespace, "--type=merge", "-p", patch, *extra
    )


def pod_certificates_enabled() -> bool:
    """Whether the installed product has the chart's ``podCertificates.enabled`` on: its signer's
    ClusterRole is there (the admission policies read the same value)."""
    return bool(kubectl("get", "clusterrole", SIGNER_ROLE, "--ignore-not-found", "-o", "name"))
