"""bench-ca: POST /sign throughput of the real ``hello-mtls-ca serve`` over keep-alive mTLS.

Starts the service on 127.0.0.1 (a fresh state in a temp dir), then client processes, each with
threads that own one keep-alive ``requests.Session`` with the provisioner credential, post
pre-generated ECDSA P-256 CSRs for a bounded time. Every answer must be 200 with a distinct
serial. Prints one JSON line with the figures and the machine's load.

    python benchmarks/bench_ca.py [--seconds 10] [--clients 2] [--threads 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# The tiers' own helpers: one wait (tests/support/waiting.py), one free port.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.processes import free_port  # noqa: E402
from support.waiting import accepts, wait_until  # noqa: E402

CLI = [sys.executable, "-m", "mtls_ca"]
_CSRS = 64


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured start (default 2)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="sessions per client (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--server-threads", type=int, default=8, help="threads per worker (8)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="hard stop per thread")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="bench-ca-") as tmp:
        root = Path(tmp)
        for command in (
            ["init", "--state", str(root / "state")],
            [
                "provisioner",
                "--state",
                str(root / "state"),
                "--name",
                "bench",
                "--out",
                str(root / "prov"),
            ],
        ):
            subprocess.run([*CLI, *command], check=True, capture_output=True, timeout=60)
        port = free_port()
        log = (root / "serve.log").open("wb")
        server = subprocess.Popen(
            [
                *CLI,
                "serve",
                "--state",
                str(root / "state"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--threads",
                str(args.server_threads),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_for(port, server)
            print(
                f"bench-ca: service up on 127.0.0.1:{port}; {args.clients}x{args.threads} "
                f"keep-alive sessions for {args.warmup:g}s warm-up + {args.seconds:g}s",
                file=sys.stderr,
            )
            csrs = [_csr() for _ in range(_CSRS)]
            start = time.time() + 1.0
            jobs = [
                (
                    f"https://127.0.0.1:{port}",
                    str(root / "prov"),
                    csrs,
                    start + args.warmup,
                    start + args.warmup + args.seconds,
                    args.threads,
                    args.max_requests,
                )
                for _ in range(args.clients)
            ]
            with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
                results = pool.starmap(_client, jobs)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            log.close()

    latencies = sorted(t for r in results for t in r["latencies"])
    serials = [s for r in results for s in r["serials"]]
    errors = sum(r["errors"] for r in results)
    figures = {
        "benchmark": "bench-ca POST /sign",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "workers": args.workers,
        "server_threads": args.server_threads,
        "sessions": args.clients * args.threads,
        "seconds": args.seconds,
        "signatures": len(latencies),
        "signatures_per_s": round(len(latencies) / args.seconds, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
        "errors": errors,
        "distinct_serials": len(set(serials)) == len(serials),
    }
    print(json.dumps(figures))
    return 0 if errors == 0 and figures["distinct_serials"] and latencies else 1


def _client(
    url: str,
    prov: str,
    csrs: list[str],
    measure_from: float,
    until: float,
    threads: int,
    max_requests: int,
) -> dict[str, Any]:
    import threading

    latencies: list[float] = []
    serials: list[str] = []
    errors = [0]
    lock = threading.Lock()

    def run(offset: int) -> None:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would replace our bundle
        session.verify = f"{prov}/ca.crt"
        session.cert = (f"{prov}/tls.crt", f"{prov}/tls.key")
        while time.time() < measure_from - 1.0:
            time.sleep(0.05)
        for i in range(max_requests):
            t0 = time.time()
            if t0 >= until:
                break
            body = {
                "csr": csrs[(offset + i) % len(csrs)],
                "names": ["bench.demo"],
                "duration": "1h",
                "namespace": "demo",
            }
            try:
                answer = session.post(f"{url}/sign", json=body, timeout=30)
                ok = answer.status_code == 200
                serial = answer.json()["serial"] if ok else None
            except requests.RequestException:
                ok, serial = False, None
            t1 = time.time()
            if t0 >= measure_from:
                with lock:
                    if ok:
                        latencies.append(t1 - t0)
                        serials.append(str(serial))
                    else:
                        errors[0] += 1

    pool = [threading.Thread(target=run, args=(n * 7,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"latencies": latencies, "serials": serials, "errors": errors[0]}


def _csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    def up() -> bool:
        if server.poll() is not None:
            raise SystemExit("bench-ca: the service exited; see its log")
        return accepts(port)

    wait_until("bench-ca: the service to accept connections", up, 30, interval=0.1)


if __name__ == "__main__":
    sys.exit(main())
