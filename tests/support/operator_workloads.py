"""Builders and probes for the operator's e2e scenarios (4, 5, 6), on `cluster_api` and
`pods`: a server Deployment, a bounded client pod, idle annotated pods, the CA status,
Secrets read back through `mtls_operator.certs.inspect`, and the operator's replicas: which
one holds the Lease, what its metrics say."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from harness.waiting import wait_until
from mtls_contract.marks import ANNOTATION_SERIAL, LABEL_MANAGED, SECRET_MODE
from mtls_operator.certs import Inspection, inspect
from mtls_operator.leadership import LEASE_NAME
from mtls_operator.tlssecret import decode_data
from support.cluster_api import IMAGE_TAG, PRODUCT_NAMESPACE, kubectl, kubectl_json, log
from support.pods import CERT_DIR, deployment, pod


def secret_inspection(name: str, namespace: str) -> tuple[Inspection, dict[str, Any]] | None:
    """The inspected content of a Secret and the Secret, or None while it does not exist."""
    out = kubectl("-n", namespace, "get", "secret", name, "-o", "json", "--ignore-not-found")
    if not out.strip():
        return None
    secret = json.loads(out)
    return inspect(decode_data(secret)), secret


def managed_inspections(namespace: str) -> dict[str, tuple[Inspection, dict[str, Any]]]:
    """Secret name → (its inspected content, the Secret) of every managed Secret in
    ``namespace``, from one list call (hundreds of Secrets in one request, not one each)."""
    found = kubectl_json("-n", namespace, "get", "secrets", "-l", f"{LABEL_MANAGED}=true")
    return {s["metadata"]["name"]: (inspect(decode_data(s)), s) for s in found["items"]}


def managed_serials(namespace: str) -> dict[str, str]:
    """Secret name → serial of every managed Secret in ``namespace``."""
    found = kubectl_json("-n", namespace, "get", "secrets", "-l", f"{LABEL_MANAGED}=true")
    return {
        s["metadata"]["name"]: s["metadata"]["annotations"][ANNOTATION_SERIAL]
        for s in found["items"]
    }


def assert_each_served_once(
    namespace: str, pods: Iterable[str], first_serial: dict[str, str]
) -> None:
    """Each pod ``NAME`` of ``pods`` has one valid Secret ``NAME-tls``, owned by the pod, naming
    ``NAME.<namespace>.svc`` and still holding ``first_serial`` (Secret name → the serial first
    seen), and no pod got two ``Issued`` Events: nothing was issued twice, even by an operator
    replica or a CA pod that died in between."""
    inspected = managed_inspections(namespace)
    for name in pods:
        inspection, secret = inspected[f"{name}-tls"]
        assert inspection.problem is None, (name, inspection.problem)
        assert f"{name}.{namespace}.svc" in inspection.names
        assert secret["metadata"]["annotations"][ANNOTATION_SERIAL] == first_serial[f"{name}-tls"]
        owners = [ref["name"] for ref in secret["metadata"]["ownerReferences"]]
        assert owners == [name], owners
    events = kubectl_json("-n", namespace, "get", "events", "--field-selector", "reason=Issued")
    issued = Counter(e["involvedObject"]["name"] for e in events["items"])
    assert [pod for pod, n in issued.items() if n > 1] == [], json.dumps(issued)


CA_STATE_DIR = "/var/lib/hello-mtls-ca/state"
"""The CA's state directory in its pod (on the PersistentVolumeClaim hello-mtls-ca-state)."""


def ca_cli(command: str, *args: str, namespace: str = PRODUCT_NAMESPACE) -> str:
    """``hello-mtls-ca COMMAND --state <the CA's state directory> ARGS...`` run in the CA pod
    of the install in ``namespace``."""
    return kubectl(
        "-n",
        namespace,
        "exec",
        "deploy/hello-mtls-ca",
        "--",
        "hello-mtls-ca",
        command,
        "--state",
        CA_STATE_DIR,
        *args,
    )


def ca_state_document() -> dict[str, Any]:
    """The CA's state file (``state.json``) as its root holder's pod has it, keys included:
    read it, never log it."""
    return dict(
        json.loads(
            kubectl(
                "-n",
                PRODUCT_NAMESPACE,
                "exec",
                "deploy/hello-mtls-ca",
                "--",
                "cat",
                f"{CA_STATE_DIR}/state.json",
            )
        )
    )


def ca_private_keys() -> list[str]:
    """Every private key of the CA (roots and intermediates, PEM), read from its state file."""
    document = ca_state_document()
    return [g[key] for g in document["generations"] for key in ("root_key", "intermediate_key")]


def ca_status(namespace: str = PRODUCT_NAMESPACE) -> dict[str, Any]:
    """``hello-mtls-ca status`` run in the CA pod of the install in ``namespace``."""
    return dict(json.loads(ca_cli("status", namespace=namespace)))


def _annotations(name: str, *, duration: str | None, mode: str) -> dict[str, str]:
    """A pod's hello-mtls annotations: its name, and its duration and mode when not defaults."""
    annotations = {"hello-mtls.dev/name": name}
    if duration:
        annotations["hello-mtls.dev/duration"] = duration
    if mode != SECRET_MODE:
        annotations["hello-mtls.dev/mode"] = mode
    return annotations


def _secret(name: str, mode: str) -> str | None:
    """The Secret a pod mounts by hand; none in pod-certificate mode (the wiring policy mounts
    the kubelet's projected volume)."""
    return f"{name}-tls" if mode == SECRET_MODE else None


def server(
    namespace: str,
    *,
    duration: str | None = None,
    stack: str = "flask",
    mode: str = SECRET_MODE,
) -> list[dict[str, Any]]:
    """A hello-mtls server Deployment ``hello`` (on ``stack``: ``hello-mtls-server --stack``;
    certificate in ``mode``, ``hello-mtls.dev/mode``) and its Service ``hello``.

    Two replicas, as a real service runs: on this 2-core machine one replica's exec probe can
    time out under load, and with a single endpoint the Service then refuses connections for a
    moment, which has nothing to do with the certificates under test.
    """
    annotations = _annotations(f"hello.{namespace}.svc", duration=duration, mode=mode)
    workload = deployment(
        "hello", replicas=2, annotations=annotations, secret=_secret("hello", mode)
    )
    container = workload["spec"]["template"]["spec"]["containers"][0]
    probe = ["hello-mtls-server", "--probe", "--bind=0.0.0.0:8443", f"--cert-dir={CERT_DIR}"]
    container.update(
        image=f"hello-mtls/server:{IMAGE_TAG}",
        command=[
            "hello-mtls-server",
            f"--stack={stack}",
            "--bind=0.0.0.0:8443",
            f"--cert-dir={CERT_DIR}",
        ],
        ports=[{"containerPort": 8443}],
        readinessProbe={"exec": {"command": probe}, "periodSeconds": 5, "timeoutSeconds": 10},
    )
    return [
        workload,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "hello"},
            "spec": {"selector": {"app": "hello"}, "ports": [{"port": 8443, "targetPort": 8443}]},
        },
    ]


def client_pod(
    namespace: str,
    *,
    count: int,
    interval: float,
    duration: str | None = None,
    library: str = "requests",
    mode: str = SECRET_MODE,
    name: str = "client",
    server_namespace: str | None = None,
) -> dict[str, Any]:
    """Pod ``name`` (identity ``<name>.<namespace>.svc``): ``count`` requests to the server of
    ``server_namespace`` (default: its own) with ``library`` (``hello-mtls-client --library``;
    certificate in ``mode``), then exit 1 if any failed."""
    annotations = _annotations(f"{name}.{namespace}.svc", duration=duration, mode=mode)
    host = f"hello.{server_namespace or namespace}.svc"
    command = [
        "hello-mtls-client",
        f"--library={library}",
        f"--url=https://{host}:8443/",
        f"--cert-dir={CERT_DIR}",
        f"--count={count}",
        f"--interval={interval}",
    ]
    client = pod(name, annotations=annotations, secret=_secret(name, mode), command=command)
    # The scenario is about renewal, not about how fast kube-proxy programs a new Service: the
    # first request waits (at most 2 minutes) until the Service accepts TCP connections.
    wait = (
        "import socket, sys, time\n"
        "deadline = time.monotonic() + 120\n"
        "while time.monotonic() < deadline:\n"
        "    try:\n"
        "        socket.create_connection((sys.argv[1], 8443), timeout=2).close()\n"
        "        sys.exit(0)\n"
        "    except OSError:\n"
        "        time.sleep(0.5)\n"
        "sys.exit('the Service never accepted a connection')\n"
    )
    main = client["spec"]["containers"][0]
    client["spec"]["initContainers"] = [
        {
            "name": "wait-for-service",
            "image": main["image"],
            "imagePullPolicy": main["imagePullPolicy"],
            "command": ["python3", "-c", wait, host],
            "securityContext": main["securityContext"],
        }
    ]
    return client


def idle_pod(namespace: str, name: str) -> dict[str, Any]:
    """Pod ``name`` that only waits, with its certificate ``<name>.<ns>.svc`` mounted."""
    annotations = {"hello-mtls.dev/name": f"{name}.{namespace}.svc"}
    return pod(name, annotations=annotations, secret=f"{name}-tls")


def pending_pod(namespace: str, name: str) -> dict[str, Any]:
    """`idle_pod` that stays Pending (a nodeSelector no node has): the operator serves it all
    the same, and hundreds fit a one-node cluster, whose kubelet runs at most 110 pods."""
    manifest = idle_pod(namespace, name)
    manifest["spec"]["nodeSelector"] = {"hello-mtls.dev/e2e": "no-such-node"}
    return manifest


def burst_pods(namespace: str, prefix: str, count: int, running: int = 10) -> list[dict[str, Any]]:
    """``count`` annotated pods named ``<prefix>NNN``: the first ``running`` start (the kubelet
    mounts their Secrets), the others stay Pending."""
    return [
        (idle_pod if i < running else pending_pod)(namespace, f"{prefix}{i:03d}")
        for i in range(count)
    ]


def phase(name: str, namespace: str) -> str:
    out = kubectl("-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}")
    return out.strip()


def finished(name: str, namespace: str) -> str | None:
    """The pod's final phase (Succeeded or Failed), None while it runs."""
    current = phase(name, namespace)
    return current if current in {"Succeeded", "Failed"} else None


def client_lines(namespace: str, name: str = "client") -> list[dict[str, Any]]:
    """The JSON lines the client pod ``name`` logged (so far, while it runs)."""
    out = kubectl("-n", namespace, "logs", name, timeout=120)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def assert_client_never_failed(namespace: str, during: str) -> None:
    """The example client in ``namespace`` (`client_pod`) still runs, answers 20 more requests
    from now, and none of all its requests failed; ``during`` names what they went through (the
    log line that carries the count)."""
    after = len(client_lines(namespace))
    wait_until(
        f"20 more requests after {during}",
        lambda: len(client_lines(namespace)) >= after + 20,
        120,
        5,
    )
    assert finished("client", namespace) is None, "the client stopped"
    lines = client_lines(namespace)
    failed = [line for line in lines if line.get("error")]
    assert failed == [], f"{len(failed)} of {len(lines)} failed: {failed[:3]}"
    log(f"{len(lines)} requests during {during}, none failed")


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


def restart_counts(namespace: str) -> list[int]:
    pods = kubectl_json("-n", namespace, "get", "pods")
    return [
        status.get("restartCount", 0)
        for item in pods["items"]
        for status in item.get("status", {}).get("containerStatuses", [])
    ]


def generations_without_failure(
    namespace: str, *, requests: int, timeout: float
) -> tuple[list[str], list[str]]:
    """Wait for the client to finish its ``requests``; check that every one was answered by the
    server of ``namespace`` and nothing restarted. Returns the server's and the client's
    certificate serials, in the order they were first used."""
    final = wait_until(
        "the client to finish its requests",
        lambda: finished("client", namespace),
        timeout=timeout,
        interval=5,
    )
    lines = client_lines(namespace)
    failed = [line for line in lines if line.get("error")]
    assert final == "Succeeded", f"{len(failed)} failed requests, first: {failed[:3]}"
    assert len(lines) == requests and failed == []
    assert all(line["body"].startswith(f"Hello, client.{namespace}") for line in lines)
    counts = restart_counts(namespace)
    assert counts and set(counts) == {0}
    return (
        list(dict.fromkeys(line["server_serial"] for line in lines)),
        list(dict.fromkeys(line["client_serial"] for line in lines)),
    )


OPERATOR_LABEL = "app.kubernetes.io/name=hello-mtls-operator"


def operator_pods() -> list[str]:
    """The names of the operator's pods that are not being deleted."""
    pods = kubectl_json("-n", PRODUCT_NAMESPACE, "get", "pods", "-l", OPERATOR_LABEL)
    return sorted(
        item["metadata"]["name"]
        for item in pods["items"]
        if not item["metadata"].get("deletionTimestamp")
    )


def lease_holder() -> str:
    """The holderIdentity of the operator's Lease: ``<pod name>_<token>``, "" if none."""
    out = kubectl(
        "-n",
        PRODUCT_NAMESPACE,
        "get",
        "lease",
        LEASE_NAME,
        "-o",
        "jsonpath={.spec.holderIdentity}",
        "--ignore-not-found",
    )
    return out.strip()


def operator_leader() -> str | None:
    """The operator pod that holds the Lease (the one that works), None while none does."""
    holder = lease_holder()
    return holder.rpartition("_")[0] or None  # pod names have no "_"


def operator_metric(pod_name: str, metric: str, port: int = 9090) -> float:
    """A metric of one operator replica, read from inside its pod (NetworkPolicies keep the
    port closed to everyone else)."""
    read = (
        "import sys, urllib.request\n"
        "print(urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/metrics').read().decode())"
    )
    out = kubectl("-n", PRODUCT_NAMESPACE, "exec", pod_name, "--", "python3", "-c", read, str(port))
    values = [line.split()[-1] for line in out.splitlines() if line.startswith(f"{metric} ")]
    assert values, f"{pod_name} reports no {metric}"
    return float(values[0])
