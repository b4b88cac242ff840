"""The chart's NetworkPolicies, enforced by the cluster's network plugin (kind and the local
cluster: kube-network-policies): only the operator's pods reach the CA's signing port, everyone
reaches its read-only port, and nobody outside the named namespaces reaches the operator.

A test that finds everything reachable fails: it does not skip, since then either the policies
or their enforcement are missing.
"""

from __future__ import annotations

import subprocess

from support.cluster_api import PRODUCT_NAMESPACE, apply, kubectl, kubectl_json
from support.operator_workloads import operator_pods
from support.pods import pod
from support.waiting import wait_until

CA = f"hello-mtls-ca.{PRODUCT_NAMESPACE}.svc"
SIGN_PORT, READ_PORT = 8444, 443
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


def test_only_the_operator_reaches_the_signing_port(installed: str, namespace: str) -> None:
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


def test_the_operators_ports_are_closed_to_unnamed_namespaces(
    installed: str, namespace: str
) -> None:
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
    operators = kubectl_json(
        "get", "pods", "-n", PRODUCT_NAMESPACE, "-l", "app.kubernetes.io/name=hello-mtls-operator"
    )["items"]
    addresses = [pod["status"]["podIP"] for pod in operators if pod["status"].get("podIP")]
    assert len(addresses) >= 2  # the leader and its standby
    assert wait_until(
        "the outsider to reach the CA's read-only port",
        lambda: reaches(namespace, "outsider", CA, READ_PORT),
        timeout=60,
    )
    for address in addresses:
        for port in (8080, 9090):  # /healthz, /metrics
            assert not reaches(namespace, "outsider", address, port), (address, port)
