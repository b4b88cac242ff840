"""The CA's gunicorn workers come and go (gunicorn ends each one with SystemExit, through
`mtls_ca.gunicorn_app.serve`): the pod's scratch space (the serving certificate, the metrics, a
signer's material and audit chain) stays with the master, so the workers it starts next serve."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from harness.ca_service import Service, credential_session
from harness.waiting import wait_until

WORKERS = 2  # what `Service` runs


def _children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (the master's workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _all_workers(master: int) -> set[int] | None:
    """The master's workers once all `WORKERS` run, else None."""
    workers = _children(master)
    return workers if len(workers) == WORKERS else None


def test_workers_that_exit_leave_the_scratch_space_to_the_master(
    pki: Path, ca_service: Service
) -> None:
    reader = credential_session(pki, None)
    master = ca_service.process.pid
    # Both of its workers (`Service` runs two), each having booted: it answered as many
    # requests.
    first = wait_until(
        "the CA's two workers",
        lambda: _all_workers(master),
        30,
        0.2,
    )
    for _ in range(2 * WORKERS):
        assert reader.get(f"{ca_service.url}/healthz", timeout=10).status_code == 200
    # SIGQUIT: gunicorn's quick exit of a worker (SystemExit at once; SIGTERM would let it
    # finish its connections first), the way out of a worker the master timed out too.
    for worker in first:
        os.kill(worker, signal.SIGQUIT)
    wait_until(
        "two new workers and none of the old",
        lambda: len(_children(master) - first) == WORKERS and not _children(master) & first,
        60,
        0.2,
    )
    for _ in range(2 * WORKERS):
        answer = reader.get(f"{ca_service.url}/healthz", timeout=10)
        assert answer.status_code == 200, answer.text
    assert reader.get(f"{ca_service.url}/metrics", timeout=10).status_code == 200
    assert ca_service.process.poll() is None
