"""Operator benchmark on a real cluster (``KUBECONFIG``), with hello-mtls installed.

1. Latency: 50 annotated pods created one after another; for each, the time from the create
   call to the moment its Secret appears on a watch, and that Secret inspects clean.
2. Throughput: 1000 annotated pods that stay Pending (a nodeSelector no node has) created as
   fast as 8 threads can; the time from the first create to the 1000th Secret on the watch.
3. The operator's RSS (VmRSS and peak VmHWM of its PID 1) after both, in the replica that
   holds the Lease (the one that works).
4. Pod certificates (when the install signs them, ``podCertificates.enabled``): running pods in
   ``hello-mtls.dev/mode: pod-certificate`` created by 8 threads (100 by default: about what one
   node holds, 110 pods, beside the system's own); for each PodCertificateRequest the kubelets
   create, the time from its ADDED event to the event that shows it Issued, on one watch.

Everything happens in a fresh namespace, deleted at the end. Bounded: every wait has a limit.
Usage: python benchmarks/bench_operator.py [--pods 50] [--pending 1000] [--pod-certificates 100]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import kubernetes
import urllib3

from mtls_operator.certs import inspect
from mtls_operator.leadership import LEASE_NAME
from mtls_operator.tlssecret import LABEL_MANAGED, decode_data

# The one wait every tier uses (tests/support/waiting.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.waiting import wait_until  # noqa: E402

CA_NAMESPACE = "hello-mtls"


def pod(namespace: str, name: str, *, pending: bool, mode: str = "secret") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "idle",
                "image": f"hello-mtls/client:{os.environ.get('IMAGE_TAG', 'dev')}",
                "imagePullPolicy": "IfNotPresent",
                "command": ["python3", "-c", "import time; time.sleep(3600)"],
            }
        ],
        "terminationGracePeriodSeconds": 0,
    }
    if pending:
        spec["nodeSelector"] = {"hello-mtls.dev/bench": "no-such-node"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {
                "hello-mtls.dev/name": f"{name}.{namespace}.svc",
                "hello-mtls.dev/mode": mode,
            },
        },
        "spec": spec,
    }


class RequestWatch:
    """Records when each PodCertificateRequest in ``namespace`` is first seen and first seen
    answered (monotonic time), and the answer's condition."""

    def __init__(self, namespace: str) -> None:
        self.added: dict[str, float] = {}
        self.answered: dict[str, tuple[float, str]] = {}
        self._watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(target=self._run, args=(namespace,), daemon=True)
        self._thread.start()

    def _run(self, namespace: str) -> None:
        api = kubernetes.client.CustomObjectsApi()
        try:
            for event in self._watch.stream(  # type: ignore[no-untyped-call]
                api.list_namespaced_custom_object,
                "certificates.k8s.io",
                "v1",
                namespace,
                "podcertificaterequests",
                timeout_seconds=1800,
            ):
                now = time.monotonic()
                body = event["object"]
                name = body["metadata"]["name"]
                self.added.setdefault(name, now)
                conditions = (body.get("status") or {}).get("conditions") or []
                if conditions and name not in self.answered:
                    self.answered[name] = (now, conditions[0]["type"])
        except urllib3.exceptions.ProtocolError:
            pass  # the namespace was deleted at the end: the API server closed the watch

    def wait(self, count: int, timeout: float) -> None:
        wait_until(f"{count} requests answered", lambda: len(self.answered) >= count, timeout, 0.2)

    def stop(self) -> None:
        self._watch.stop()  # type: ignore[no-untyped-call]


def signs_pod_certificates() -> bool:
    """Whether the installed operator is a pod-certificate signer (its ClusterRole exists)."""
    try:
        kubernetes.client.RbacAuthorizationV1Api().read_cluster_role(
            "hello-mtls-pod-certificate-signer"
        )
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def bench_pod_certificates(api: Any, namespace: str, count: int) -> None:
    """Part 4: ``count`` running pod-certificate pods; PCR seen -> seen Issued."""
    watch = RequestWatch(namespace)
    names = [f"pcr{i:03d}" for i in range(count)]
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: api.create_namespaced_pod(
                        namespace,
                        cast(Any, pod(namespace, n, pending=False, mode="pod-certificate")),
                    ),
                    names,
                )
            )
        watch.wait(count, timeout=900)
    finally:
        watch.stop()
    latencies = [answered - watch.added[name] for name, (answered, _) in watch.answered.items()]
    results = sorted({kind for _, kind in watch.answered.values()})
    assert results == ["Issued"], f"answers: {results}"
    print(
        f"{count} running pod-certificate pods: all Issued after"
        f" {time.monotonic() - started:.1f} s;"
        f" PodCertificateRequest seen -> seen Issued over {len(latencies)} requests:"
        f" p50 {statistics.median(latencies) * 1000:.0f} ms,"
        f" p99 {percentile(latencies, 99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
        f" (target p50 <= 300 ms, p99 <= 1 s); load {os.getloadavg()[0]:.2f}",
        flush=True,
    )


class SecretWatch:
    """Records when each managed Secret in ``namespace`` first appears (monotonic time)."""

    def __init__(self, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self.bodies: dict[str, Any] = {}
        self._watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(target=self._run, args=(namespace,), daemon=True)
        self._thread.start()

    def _run(self, namespace: str) -> None:
        try:
            self._stream(namespace)
        except urllib3.exceptions.ProtocolError:
            pass  # the namespace was deleted at the end: the API server closed the watch

    def _stream(self, namespace: str) -> None:
        api = kubernetes.client.CoreV1Api()
        for event in self._watch.stream(  # type: ignore[no-untyped-call]
            api.list_namespaced_secret,
            namespace,
            label_selector=f"{LABEL_MANAGED}=true",
            timeout_seconds=1800,
        ):
            name = event["object"].metadata.name
            if name not in self.seen:
                now = time.monotonic()  # seen last: a waiter finds the body with it
                self.bodies[name] = api.api_client.sanitize_for_serialization(event["object"])
                self.seen[name] = now

    def wait(self, name: str, timeout: float) -> float:
        """When the Secret ``name`` appeared (recorded by the watch, not by this poll)."""
        return wait_until(f"the Secret {name}", lambda: self.seen.get(name), timeout, 0.05)

    def stop(self) -> None:
        self._watch.stop()  # type: ignore[no-untyped-call]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def operator_leader() -> str:
    """The operator pod that holds the Lease: the one that works (the standby only watches)."""
    lease = kubernetes.client.CoordinationV1Api().read_namespaced_lease(LEASE_NAME, CA_NAMESPACE)
    assert lease.spec is not None and lease.spec.holder_identity, "no operator replica leads"
    return lease.spec.holder_identity.rpartition("_")[0]  # <pod name>_<token>


def operator_memory() -> str:
    leader = operator_leader()
    out = subprocess.run(
        [
            "kubectl",
            "-n",
            CA_NAMESPACE,
            "exec",
            leader,
            "--",
            "cat",
            "/proc/1/status",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{leader} VmRSS {fields['VmRSS'].strip()}, peak VmHWM {fields['VmHWM'].strip()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=50, help="pods for the latency run")
    parser.add_argument("--pending", type=int, default=1000, help="Pending pods for throughput")
    parser.add_argument(
        "--pod-certificates",
        type=int,
        default=100,
        help="running pod-certificate pods (0: skip; skipped too when the install signs none)",
    )
    args = parser.parse_args()
    kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    api = kubernetes.client.CoreV1Api()
    namespace = f"bench-operator-{uuid.uuid4().hex[:6]}"
    print(
        f"date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()},"
        f" load {os.getloadavg()[0]:.2f}; namespace {namespace}",
        flush=True,
    )
    api.create_namespace(cast(Any, {"metadata": {"name": namespace}}))
    watch = SecretWatch(namespace)
    try:
        print(f"operator before: {operator_memory()}", flush=True)
        if args.pods:
            latencies = []
            for i in range(args.pods):
                name = f"lat{i:03d}"
                started = time.monotonic()
                api.create_namespaced_pod(namespace, cast(Any, pod(namespace, name, pending=True)))
                latencies.append(watch.wait(f"{name}-tls", timeout=30) - started)
                found = inspect(decode_data(watch.bodies[f"{name}-tls"]))
                assert found.problem is None, f"{name}-tls: {found.problem}"
            print(
                f"latency pod -> valid Secret over {args.pods} pods: "
                f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
                f"p99 {percentile(latencies, 99) * 1000:.0f} ms, "
                f"max {max(latencies) * 1000:.0f} ms (target p50 <= 300 ms, p99 <= 1 s)",
                flush=True,
            )
        if args.pending:
            names = [f"bulk{i:04d}" for i in range(args.pending)]
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda n: api.create_namespaced_pod(
                            namespace, cast(Any, pod(namespace, n, pending=True))
                        ),
                        names,
                    )
                )
            created = time.monotonic() - started
            last = max(watch.wait(f"{n}-tls", timeout=600) for n in names)
            print(
                f"{args.pending} Pending pods: created in {created:.1f} s, all Secrets after "
                f"{last - started:.1f} s (target <= 60 s); load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        print(f"operator after: {operator_memory()} (target RSS <= 150 MB)", flush=True)
        if args.pod_certificates and signs_pod_certificates():
            bench_pod_certificates(api, namespace, args.pod_certificates)
        elif args.pod_certificates:
            print("pod certificates: skipped, the install has podCertificates.enabled off")
    finally:
        watch.stop()
        api.delete_namespace(namespace)
        print(f"deleted namespace {namespace}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
