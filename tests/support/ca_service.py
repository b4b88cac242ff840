"""A real ``hello-mtls-ca serve`` on 127.0.0.1 and HTTPS sessions with its credentials."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from mtls_context import layout
from support.processes import free_port

CLI = [sys.executable, "-m", "mtls_ca"]


def cli(*args: str) -> None:
    """Run ``hello-mtls-ca ARGS``; fails the test with its stderr."""
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


class Service:
    """One ``serve`` process group (extra ``args`` go to ``serve``); `stop` ends it (SIGTERM,
    then SIGKILL)."""

    def __init__(self, state: Path, log: Path, *args: str) -> None:
        self.state, self.log = state, log
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        command = [*CLI, "serve", "--state", str(state), "--bind", f"127.0.0.1:{self.port}"]
        command += ["--workers", "2", "--upkeep-interval", "1", *args]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"serve did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


def credential_session(pki: Path, credential: str | None) -> requests.Session:
    """A session that trusts ``pki/prov/ca.crt`` and presents ``pki/<credential>`` (if any)."""
    session = requests.Session()
    # REQUESTS_CA_BUNDLE in the environment would override session.verify
    # (https://github.com/psf/requests/issues/3829); only our bundle may count here.
    session.trust_env = False
    session.verify = str(pki / "prov" / layout.CA)
    if credential is not None:
        session.cert = (str(pki / credential / layout.CERT), str(pki / credential / layout.KEY))
    return session
