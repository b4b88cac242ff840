"""The chart's NetworkPolicies, enforced by the cluster's network plugin (kind and the local
cluster: kube-network-policies): only the operator's pods reach the CA's signing port, everyone
reaches the read-only port of the Service hello-mtls-ca (the signers), only the product's own pods
reach the root holder's, and nobody outside the named namespaces reaches the operator.

A test that finds everything reachable fails: it does not skip, since then either the policies
or their enforcement are missing.
"""

from __future__ import annotations

import subprocess
from typing import Any

from harness.waiting import wait_until
from support.cluster_api import PRODUCT_NAMESPACE, apply, kubectl, kubectl_json
from support.operator_workloads import operator_pods
from support.pods import pod

CA = f"hello-mtls-ca.{PRODUCT_NAMESPACE}.svc"
SIGN_PORT, READ_PORT = 8444, 443
POD_READ_PORT = 8443
ROOT_HOLDER_LABEL = "app.kubernetes.io/name=hello-mtls-ca"
OPERATOR_LABEL = "app.kubernetes.io/name=hello-mtls-operator"
CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=4).close()\n"
    "except OSError as error:\n"
    "    sys.exit(f'unreachable: {error}')\n"
)


def reaches(namespace: str, target: str, host: str, port: int) -> bool:
    """Whether a TCP connection from ``target`` (a pod, or ``deploy/NAME``) to host:port opens."""
    done = subprocess.run(
        [
            "kubectl",
            "exec",
            "-n",
            namespace,
            target,
            "--",
            "python3",
            "-c",
            CONNECT,
            host,
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 or "unreachable" in done.stderr, done.stderr  # exec itself worked
    return done.returncode == 0


def outsider(namespace: str) -> None:
    """A pod in ``namespace`` (not the product's) to connect from, ready."""
    apply(pod("outsider"), namespace)
    kubectl(
        "wait",
        "pod/outsider",
        "-n",
        namespace,
        "--for=condition=Ready",
        "--timeout=120s",
        timeout=130,
    )


def pod_addresses(label: str, *, ready: bool = False) -> list[str]:
    """The pod IPs of the product's pods with ``label`` that are not being deleted (and are
    Ready, if asked)."""
    items = kubectl_json("get", "pods", "-n", PRODUCT_NAMESPACE, "-l", label)["items"]
    return [
        item["status"]["podIP"]
        for item in items
        if item["status"].get("podIP")
        and not item["metadata"].get("deletionTimestamp")
        and (not ready or _ready(item))
    ]


def _ready(item: dict[str, Any]) -> bool:
    conditions = item["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def root_holder_address() -> str:
    """The root holder's pod IP once exactly one of its pods is Ready (a module before may
    have restarted it), else ""."""
    addresses = pod_addresses(ROOT_HOLDER_LABEL, ready=True)
    return addresses[0] if len(addresses) == 1 else ""


def test_only_the_operator_reaches_the_signing_port(installed: str, namespace: str) -> None:
    outsider(namespace)

    for replica in operator_pods():  # the standby too: it signs once it leads
        assert reaches(PRODUCT_NAMESPACE, replica, CA, SIGN_PORT), replica
    # The read-only port stays open to every pod (the twin: the outsider's network works).
    assert wait_until(
        "the outsider to reach the CA's read-only port",
        lambda: reaches(namespace, "outsider", CA, READ_PORT),
        timeout=60,
    )
    assert not reaches(namespace, "outsider", CA, SIGN_PORT)
    # Being in the CA's namespace is not enough: the example client is not the operator.
    assert not reaches(PRODUCT_NAMESPACE, "deploy/hello-client", CA, SIGN_PORT)


def test_the_root_holders_read_only_port_is_closed_to_other_namespaces(
    installed: str, namespace: str
) -> None:
    outsider(namespace)
    root_holder = wait_until("one Ready root holder pod", root_holder_address, timeout=180)
    # The twin: the signers' Service still serves the read-only endpoints to the outsider.
    assert wait_until(
        "the outsider to reach the CA's read-only port",
        lambda: reaches(namespace, "outsider", CA, READ_PORT),
        timeout=60,
    )
    assert not reaches(namespace, "outsider", root_holder, POD_READ_PORT)
    # Its own pods still reach it: the operator's, and the signers'.
    for replica in operator_pods():
        assert reaches(PRODUCT_NAMESPACE, replica, root_holder, POD_READ_PORT), replica
    assert reaches(PRODUCT_NAMESPACE, "deploy/hello-mtls-ca-signer", root_holder, POD_READ_PORT)
    # Being in the CA's namespace is not enough: the example client is not the product.
    assert not reaches(PRODUCT_NAMESPACE, "deploy/hello-client", root_holder, POD_READ_PORT)


def test_the_operators_ports_are_closed_to_unnamed_namespaces(
    installed: str, namespace: str
) -> None:
    outsider(namespace)
    addresses = pod_addresses(OPERATOR_LABEL)
    assert len(addresses) >= 2  # the leader and its standby
    assert wait_until(
        "the outsider to reach the CA's read-only port",
        lambda: reaches(namespace, "outsider", CA, READ_PORT),
        timeout=60,
    )
    for address in addresses:
        for port in (8080, 9090):  # /healthz, /metrics
            assert not reaches(namespace, "outsider", address, port), (address, port)
