"""bench-audit: write an audit trail of 100,000 records with the CA's writer, then verify it.

The records are issuance records shaped like the service's (names, SPIFFE ID, serial, public-key
fingerprint), written by `mtls_ca.audit.AuditLog` from 8 threads as the service's request
threads write them, each made durable (fdatasync) before its call returns, with a signed head
every 1000. Then ``hello-mtls-ca audit verify`` (the real command, a new process) checks the
whole log. Prints one JSON line with both times.

    python benchmarks/bench_audit.py [--records 100000]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mtls_ca.audit import AuditLog
from mtls_ca.authority import CA
from mtls_ca.state import DirectoryStore, State
from mtls_contract.identities import provisioner_id, spiffe_id
from mtls_contract.name_rules import CLUSTER_DOMAIN

OPERATOR = provisioner_id(CLUSTER_DOMAIN, "operator")
WORKLOAD = spiffe_id(CLUSTER_DOMAIN, "shop", "default")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="default 100000")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir=os.environ.get("TMPDIR")) as tmp:
        state_dir = Path(tmp) / "state"
        state = DirectoryStore(state_dir).create(State(generations=(CA.create(),)))
        log = AuditLog(state_dir / "audit", signing=lambda: state.signer)
        start = time.perf_counter()

        def write(n: int) -> None:
            log.record(
                "issuance",
                OPERATOR,
                names=[f"web-{n}.shop", f"web-{n}.shop.svc"],
                spiffe_id=WORKLOAD,
                namespace="shop",
                serial=hashlib.sha1(n.to_bytes(8, "big")).hexdigest(),
                public_key_sha256=hashlib.sha256(n.to_bytes(8, "big")).hexdigest(),
                not_after="2026-12-08T09:00:00Z",
                issuer="CN=hello-mtls intermediate 0badcafe,O=hello-mtls",
            )

        with ThreadPoolExecutor(8) as pool:
            for _ in pool.map(write, range(args.records)):
                pass
        log.sign_head()
        written = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (state_dir / "audit").glob("*.jsonl"))
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "mtls_ca", "audit", "verify", "--state", str(state_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        verified = time.perf_counter() - start
    figures = {
        "benchmark": "bench-audit verify",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "records": args.records,
        "log_mib": round(size / 2**20, 1),
        "write_s": round(written, 2),
        "appends_per_s": round(args.records / written, 1),
        "verify_s": round(verified, 2),
        "verify_exit": done.returncode,
        "verdict": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr,
    }
    print(json.dumps(figures))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
