"""Operator benchmark on a real cluster (``KUBECONFIG``), with hello-mtls installed.

1. Latency: 50 annotated pods created one after another; for each, the time from the create
   call to the moment its Secret appears on a watch, and that Secret inspects clean.
2. Throughput: 1000 annotated pods that stay Pending (a nodeSelector no node has) created as
   fast as 8 threads can; the time from the first create to the 1000th Secret on the watch.
3. The operator's RSS (VmRSS and peak VmHWM of its PID 1) after both.

Everything happens in a fresh namespace, deleted at the end. Bounded: every wait has a limit.
Usage: python benchmarks/bench_operator.py [--pods 50] [--pending 1000]
"""

from __future__ import annotations

import argparse
import datetime
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kubernetes
import urllib3

from mtls_operator.certs import inspect
from mtls_operator.tlssecret import LABEL_MANAGED, decode_data

CA_NAMESPACE = "hello-mtls"


def pod(namespace: str, name: str, *, pending: bool) -> dict[str, Any]:
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
            "annotations": {"hello-mtls.dev/name": f"{name}.{namespace}.svc"},
        },
        "spec": spec,
    }


class SecretWatch:
    """Records when each managed Secret in ``namespace`` first appears (monotonic time)."""

    def __init__(self, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self.bodies: dict[str, Any] = {}
        self._events: queue.Queue[str] = queue.Queue()
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
                self.seen[name] = time.monotonic()
                self.bodies[name] = api.api_client.sanitize_for_serialization(event["object"])
                self._events.put(name)

    def wait(self, name: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while name not in self.seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no Secret {name} after {timeout} s")
            try:
                self._events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
        return self.seen[name]

    def stop(self) -> None:
        self._watch.stop()  # type: ignore[no-untyped-call]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def operator_memory() -> str:
    out = subprocess.run(
        [
            "kubectl",
            "-n",
            CA_NAMESPACE,
            "exec",
            "deploy/hello-mtls-operator",
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
    return f"VmRSS {fields['VmRSS'].strip()}, peak VmHWM {fields['VmHWM'].strip()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=50, help="pods for the latency run")
    parser.add_argument("--pending", type=int, default=1000, help="Pending pods for throughput")
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
    finally:
        watch.stop()
        api.delete_namespace(namespace)
        print(f"deleted namespace {namespace}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
