"""Whether the cluster enforces the CA's NetworkPolicy: a short-lived pod without the operator's
labels, in the CA's own namespace, must reach the CA's read-only port and not its signing port.

The pod runs the CA's own image (already on the nodes: nothing is pulled), lives at most
`DEADLINE_SECONDS`, and is deleted whatever happens. Seeing a NetworkPolicy object proves
nothing: a network plugin that does not enforce them ignores it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mtls_cli.cluster import CA_DEPLOYMENT, Api, ApiError

__all__ = ["DEADLINE_SECONDS", "LABEL", "Outcome", "probe"]

LABEL = "hello-mtls-check-probe"
"""Its ``app.kubernetes.io/name``: no NetworkPolicy of the chart admits it anywhere."""
DEADLINE_SECONDS = 90
"""The pod's ``activeDeadlineSeconds``, and how long the CLI waits for it."""
READ_PORT, SIGN_PORT = 443, 8444
"""The CA Service's ports: read-only (open to every pod) and signing (the operator only)."""

REFUSED, REACHED, NO_READ_PORT = 0, 1, 3
_SCRIPT = f"""\
import socket, sys, time
host = sys.argv[1]
def reaches(port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False
deadline = time.monotonic() + 30
while not reaches({READ_PORT}):  # the pod's network and the Service first: a control
    if time.monotonic() > deadline:
        sys.exit({NO_READ_PORT})
    time.sleep(1)
sys.exit({REACHED} if reaches({SIGN_PORT}) else {REFUSED})
"""


@dataclass(frozen=True)
class Outcome:
    """What the probe pod saw: ``refused`` is the healthy answer."""

    refused: bool
    text: str
    fix: str = ""


def probe(
    api: Api,
    namespace: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Run the probe pod in ``namespace`` (the install's) and say what it saw.

    Raises:
        ApiError: the CA's Deployment is missing, or the API refused to create the pod.
    """
    deployment = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{CA_DEPLOYMENT}")
    if deployment is None:
        raise ApiError(f"no Deployment {namespace}/{CA_DEPLOYMENT}")
    ca = deployment["spec"]["template"]["spec"]["containers"][0]
    name = f"{LABEL}-{secrets.token_hex(3)}"
    pods = f"/api/v1/namespaces/{namespace}/pods"
    host = f"{CA_DEPLOYMENT}.{namespace}.svc"
    api.create(pods, _pod(name, ca["image"], host))
    try:
        deadline = clock() + DEADLINE_SECONDS
        while clock() < deadline:
            code = _exit_code(api.get(f"{pods}/{name}"))
            if code is not None:
                return _outcome(code, host, namespace)
            sleep(1)
        return Outcome(
            False,
            f"the probe pod {name} did not finish within {DEADLINE_SECONDS} s",
            f"kubectl -n {namespace} get events --field-selector involvedObject.name={name}",
        )
    finally:
        api.delete(f"{pods}/{name}")


def _outcome(code: int, host: str, namespace: str) -> Outcome:
    if code == REFUSED:
        return Outcome(True, f"a pod without the operator's labels cannot reach {host}:{SIGN_PORT}")
    if code == REACHED:
        return Outcome(
            False,
            f"a pod without the operator's labels reaches {host}:{SIGN_PORT}",
            "the network plugin does not enforce NetworkPolicies, or NetworkPolicy"
            f" {CA_DEPLOYMENT} admits too much (kubectl -n {namespace} get networkpolicy"
            f" {CA_DEPLOYMENT} -o yaml); use a plugin that enforces them (docs/security.md)",
        )
    if code == NO_READ_PORT:
        return Outcome(
            False,
            f"the probe pod cannot reach {host}:{READ_PORT}, so it cannot tell",
            f"the CA's Service or the cluster's DNS: kubectl -n {namespace} get endpointslices"
            f" -l kubernetes.io/service-name={CA_DEPLOYMENT}",
        )
    return Outcome(False, f"the probe pod failed (exit status {code})", "its log says why")


def _exit_code(pod: dict[str, Any] | None) -> int | None:
    status = (pod or {}).get("status") or {}
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated is not None:
            return int(terminated.get("exitCode", -1))
    if status.get("phase") == "Failed":  # activeDeadlineSeconds, before the container ended
        return -1
    return None


def _pod(name: str, image: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": LABEL}},
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": DEADLINE_SECONDS,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-c", _SCRIPT, host],
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
