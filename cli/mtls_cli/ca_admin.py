"""``revoke`` and ``rotate-root``: ``hello-mtls-ca`` run on the CA's state in the root holder's pod
(``pods/exec`` through the API server), so the admin credential is the Kubernetes RBAC that
allows that exec (docs/ca.md, "Revocation"), never a CA credential kept on the admin's machine
nor the operator's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtls_cli.cluster import CA_DEPLOYMENT, Api, ApiError, Executed, ca_pod

__all__ = ["CARefusal", "ca_command", "cert_bytes", "revoke_arguments"]

ADMIN_ROLE = "hello-mtls-ca-admin"
"""The chart's Role that lets an admin run ``hello-mtls-ca`` in the CA's pod."""
CERT_FILE = "tls.crt"
"""The certificate in a certificate directory (`mtls_context.layout.CERT`)."""


class CARefusal(Exception):
    """``hello-mtls-ca`` in the CA's pod refused (its message) with a non-zero exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def revoke_arguments(
    *, serial: str | None, identity: str | None, namespace: str | None, cert: bool, reason: str
) -> list[str]:
    """``hello-mtls-ca revoke``'s arguments after ``--state`` (``--cert -``: on stdin)."""
    chosen = [
        ("--serial", serial),
        ("--identity", identity),
        ("--namespace", namespace),
        ("--cert", "-" if cert else None),
    ]
    return [a for flag, value in chosen if value is not None for a in (flag, value)] + [
        "--reason",
        reason,
    ]


def cert_bytes(path: Path) -> bytes:
    """The certificate file, or a certificate directory's ``tls.crt``, as bytes.

    Raises:
        ValueError: neither is there.
    """
    file = path / CERT_FILE if path.is_dir() else path
    try:
        return file.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read {file}: {error.strerror}") from None


def ca_command(
    api: Api, namespace: str, command: str, args: Sequence[str], stdin: bytes | None = None
) -> dict[str, Any]:
    """``hello-mtls-ca COMMAND --state <its state> ARGS`` in a ready root-holder pod; its JSON.

    Raises:
        ApiError: no ready CA pod, or the exec was refused (the RBAC: ``pods/exec``).
        CARefusal: the command failed (its stderr says why).
    """
    try:
        state = _state_dir(api, namespace)
        pod = ca_pod(api, namespace)
        done: Executed = api.exec(
            namespace, pod, ["hello-mtls-ca", command, "--state", state, *args], stdin
        )
    except ApiError as error:
        if " forbidden" not in str(error) and "403" not in str(error):
            raise
        raise ApiError(
            f"{error} (this takes the Role {ADMIN_ROLE} in {namespace}: bind it to you,"
            " docs/ca.md, revocation)"
        ) from None
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise CARefusal(said[-1] if said else f"exit status {done.returncode}", done.returncode)
    try:
        return dict(json.loads(done.stdout))
    except ValueError:
        raise ApiError(f"hello-mtls-ca {command} in {namespace}/{pod} printed no JSON") from None


def _state_dir(api: Api, namespace: str) -> str:
    """The ``--state`` of the root holder's ``serve`` (its Deployment's container arguments)."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{CA_DEPLOYMENT}"
    deployment = api.get(path)
    if deployment is None:
        raise ApiError(f"no Deployment {namespace}/{CA_DEPLOYMENT}")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    words = [*(container.get("command") or []), *(container.get("args") or [])]
    for i, word in enumerate(words):
        if word.startswith("--state="):
            return str(word.partition("=")[2])
        if word == "--state" and i + 1 < len(words):
            return str(words[i + 1])
    raise ApiError(f"Deployment {namespace}/{CA_DEPLOYMENT} runs no hello-mtls-ca with --state")
