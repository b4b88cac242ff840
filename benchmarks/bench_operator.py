"""Operator benchmark on a real cluster (``KUBECONFIG``), with hello-mtls installed.

1. Latency: 50 annotated pods created one after another; for each, the time from the create
   call to the moment its Secret appears on a watch, and that Secret inspects clean.
2. Throughput: 10,000 annotated pods that stay Pending (a nodeSelector no node has), spread
   over 100 namespaces, created as fast as 8 threads can; the time from the last create, and
   from the first, to the last Secret on the watch (target: every Secret within 120 s of the
   last create), with progress every 10 s.
3. The operator's RSS (VmRSS and peak VmHWM of its PID 1) after both, in the replica that
   holds the Lease (the one that works; target: 200 MB).
4. Pod certificates (when the install signs them, ``podCertificates.enabled``): running pods in
   ``hello-mtls.dev/mode: pod-certificate`` created by 8 threads (100 by default: about what one
   node holds, 110 pods, beside the system's own); for each PodCertificateRequest the kubelets
   create, the time from its ADDED event to the event that shows it Issued, on one watch.

Everything happens in fresh namespaces (``bench-operator-XXXXXX-NNN``), deleted at the end,
also after a failure or Ctrl-C. Bounded: every create and every wait has a limit.
Usage: python benchmarks/bench_operator.py [--pods 50] [--pending 10000] [--namespaces 100]
[--pod-certificates 100]
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

from mtls_contract.marks import LABEL_MANAGED
from mtls_operator.certs import inspect
from mtls_operator.leadership import LEASE_NAME
from mtls_operator.tlssecret import decode_data

# The one wait every tier and benchmark uses (hack/harness/waiting.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hack"))
from harness.waiting import wait_until  # noqa: E402

CA_NAMESPACE = "hello-mtls"
CREATE_THREADS = 8
CALL_TIMEOUT = 30  # seconds, per API call
ALL_SECRETS_TIMEOUT = 900  # seconds after the last create: the bound, far above the target
PROGRESS_SECONDS = 10.0


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
    """Records when each managed Secret in the namespaces named ``prefix...`` first appears
    (monotonic time), keyed ``namespace/name``, with the bodies of those whose name starts with
    ``keep`` (10,000 bodies would weigh on the bench itself)."""

    def __init__(self, prefix: str, keep: str) -> None:
        self.seen: dict[str, float] = {}
        self.bodies: dict[str, Any] = {}
        self._prefix, self._keep = prefix, keep
        self._watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._stream()
        except urllib3.exceptions.ProtocolError:
            pass  # the namespace was deleted at the end: the API server closed the watch

    def _stream(self) -> None:
        api = kubernetes.client.CoreV1Api()
        for event in self._watch.stream(  # type: ignore[no-untyped-call]
            api.list_secret_for_all_namespaces,
            label_selector=f"{LABEL_MANAGED}=true",
            timeout_seconds=3600,
        ):
            meta = event["object"].metadata
            if not meta.namespace.startswith(self._prefix):
                continue
            key = f"{meta.namespace}/{meta.name}"
            if key not in self.seen:
                now = time.monotonic()  # seen last: a waiter finds the body with it
                if meta.name.startswith(self._keep):
                    self.bodies[key] = api.api_client.sanitize_for_serialization(event["object"])
                self.seen[key] = now

    def wait(self, key: str, timeout: float) -> float:
        """When the Secret ``key`` appeared (recorded by the watch, not by this poll)."""
        return wait_until(f"the Secret {key}", lambda: self.seen.get(key), timeout, 0.05)

    def wait_all(self, keys: list[str], timeout: float) -> float:
        """When the last of the Secrets ``keys`` appeared."""
        wait_until(f"{len(keys)} Secrets", lambda: all(k in self.seen for k in keys), timeout, 0.5)
        return max(self.seen[k] for k in keys)

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


def create_pending(api: Any, namespaces: list[str], count: int, watch: SecretWatch) -> list[str]:
    """Part 2: ``count`` Pending pods, round-robin over ``namespaces``, by `CREATE_THREADS`
    threads, with progress every `PROGRESS_SECONDS`; returns the keys of their Secrets."""
    pods = [(namespaces[i % len(namespaces)], f"bulk{i:05d}") for i in range(count)]
    created = 0
    lock = threading.Lock()
    done = threading.Event()

    def create(where: tuple[str, str]) -> None:
        nonlocal created
        namespace, name = where
        body = cast(Any, pod(namespace, name, pending=True))
        api.create_namespaced_pod(namespace, body, _request_timeout=CALL_TIMEOUT)
        with lock:
            created += 1

    def progress() -> None:
        started = time.monotonic()
        while not done.wait(PROGRESS_SECONDS):
            print(
                f"  {time.monotonic() - started:.0f} s: {created}/{count} pods created,"
                f" {len(watch.seen)} Secrets seen; load {os.getloadavg()[0]:.2f}",
                flush=True,
            )

    threading.Thread(target=progress, daemon=True).start()
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            list(pool.map(create, pods))  # a failed create raises here: no request may fail
        last_create = time.monotonic()
        keys = [f"{namespace}/{name}-tls" for namespace, name in pods]
        last_secret = watch.wait_all(keys, timeout=ALL_SECRETS_TIMEOUT)
    finally:
        done.set()
    print(
        f"{count} Pending pods over {len(namespaces)} namespaces: created in"
        f" {last_create - started:.1f} s, the last Secret {last_secret - last_create:.1f} s after"
        f" the last create (target <= 120 s), {last_secret - started:.1f} s after the first;"
        f" load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    return keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=50, help="pods for the latency run")
    parser.add_argument("--pending", type=int, default=10000, help="Pending pods for throughput")
    parser.add_argument(
        "--namespaces", type=int, default=100, help="namespaces the Pending pods spread over"
    )
    parser.add_argument(
        "--pod-certificates",
        type=int,
        default=100,
        help="running pod-certificate pods (0: skip; skipped too when the install signs none)",
    )
    args = parser.parse_args()
    if args.namespaces < 1:
        parser.error("--namespaces: at least 1")
    kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    api = kubernetes.client.CoreV1Api()
    prefix = f"bench-operator-{uuid.uuid4().hex[:6]}"
    namespaces = [f"{prefix}-{i:03d}" for i in range(args.namespaces)]
    first = namespaces[0]  # the latency and pod-certificate parts run here
    print(
        f"date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()},"
        f" load {os.getloadavg()[0]:.2f}; namespaces {prefix}-000..{len(namespaces) - 1:03d}",
        flush=True,
    )
    watch = SecretWatch(prefix, keep="lat")
    made: list[str] = []
    try:
        for namespace in namespaces:
            api.create_namespace(
                cast(Any, {"metadata": {"name": namespace}}), _request_timeout=CALL_TIMEOUT
            )
            made.append(namespace)
        print(f"operator before: {operator_memory()}", flush=True)
        if args.pods:
            latencies = []
            for i in range(args.pods):
                name = f"lat{i:03d}"
                started = time.monotonic()
                api.create_namespaced_pod(first, cast(Any, pod(first, name, pending=True)))
                latencies.append(watch.wait(f"{first}/{name}-tls", timeout=30) - started)
                found = inspect(decode_data(watch.bodies[f"{first}/{name}-tls"]))
                assert found.problem is None, f"{name}-tls: {found.problem}"
            print(
                f"latency pod -> valid Secret over {args.pods} pods: "
                f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
                f"p99 {percentile(latencies, 99) * 1000:.0f} ms, "
                f"max {max(latencies) * 1000:.0f} ms (target p50 <= 300 ms, p99 <= 1 s)",
                flush=True,
            )
        if args.pending:
            create_pending(api, namespaces, args.pending, watch)
        print(f"operator after: {operator_memory()} (target RSS <= 200 MB)", flush=True)
        if args.pod_certificates and signs_pod_certificates():
            bench_pod_certificates(api, first, args.pod_certificates)
        elif args.pod_certificates:
            print("pod certificates: skipped, the install has podCertificates.enabled off")
    finally:
        watch.stop()
        for namespace in made:  # the API server deletes their pods and Secrets in the background
            api.delete_namespace(namespace, _request_timeout=CALL_TIMEOUT)
        print(f"deleting namespaces {prefix}-*: {len(made)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
