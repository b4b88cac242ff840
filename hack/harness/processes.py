"""Real processes for the tests: each started in a process group of its own, always stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.waiting import wait_until

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    argv: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a process group of its own, stdin empty, stdout+stderr appended to
    ``log`` (a restarted process writes beside its earlier run); `stop` ends it."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


@contextlib.contextmanager
def running(
    argv: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`start` ``argv``; `stop` its whole process group on exit."""
    proc = start(argv, log, env)
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> int:
    """SIGTERM the process group, then SIGKILL it if it does not exit in time."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout)


def wait_until_healthy(
    proc: subprocess.Popen[bytes], port: int, cert_dir: Path, log: Path, timeout: float = 30
) -> None:
    """Wait until ``hello-mtls-server --probe`` passes (the workers answer over mTLS)."""
    from mtls_server.cli import probe

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()}")
        return probe(f"127.0.0.1:{port}", cert_dir, timeout=1) == 0

    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        with contextlib.redirect_stderr(quiet):
            try:
                wait_until("the server to pass its probe", healthy, timeout, 0.1, retry_on=())
            except AssertionError as error:
                raise AssertionError(f"{error}:\n{log.read_text()}") from None


@contextlib.contextmanager
def hello_server(
    cert_dir: Path, log: Path, *args: str, check_interval: float = 1.0, workers: int = 1
) -> Iterator[int]:
    """A real ``hello-mtls-server`` on 127.0.0.1; yields its port once it serves."""
    port = free_port()
    argv = [
        str(BIN / "hello-mtls-server"),
        f"--bind=127.0.0.1:{port}",
        f"--cert-dir={cert_dir}",
        f"--check-interval={check_interval}",
        f"--workers={workers}",
        *args,
    ]
    with running(argv, log) as proc:
        wait_until_healthy(proc, port, cert_dir, log)
        yield port


def hello_client(
    url: str, cert_dir: Path, *args: str, count: int = 1
) -> tuple[int, list[dict[str, Any]]]:
    """Run ``hello-mtls-client`` for ``count`` requests to ``url`` (``args`` added); its exit
    status and its JSON lines, one a request."""
    done = subprocess.run(
        [
            str(BIN / "hello-mtls-client"),
            f"--url={url}",
            f"--cert-dir={cert_dir}",
            f"--count={count}",
            "--interval=0.05",
            *args,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(lines) == count, done.stderr.decode()
    return done.returncode, lines


class HelloServers:
    """Inside ``with``: one `hello_server` per stack on ``cert_dir``, each allowing ``allow``,
    started when a test first asks for its port; all stopped on exit."""

    def __init__(self, cert_dir: Path, logs: Path, allow: Sequence[str]) -> None:
        self._cert_dir, self._logs = cert_dir, logs
        self._allow = [f"--allow={name}" for name in allow]
        self._ports: dict[str, int] = {}
        self._servers = contextlib.ExitStack()

    def port(self, stack: str) -> int:
        if stack not in self._ports:
            log = self._logs / f"{stack}.log"
            server = hello_server(self._cert_dir, log, f"--stack={stack}", *self._allow)
            self._ports[stack] = self._servers.enter_context(server)
        return self._ports[stack]

    def __enter__(self) -> HelloServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self._servers.close()
