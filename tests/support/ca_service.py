"""A real ``hello-mtls-ca serve`` on 127.0.0.1 and HTTPS sessions with its credentials."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import requests

from mtls_context import layout
from support import ca_cli
from support.processes import free_port
from support.waiting import accepts, wait_until


class Service:
    """One ``serve`` process group (extra ``args`` go to ``serve``; ``state`` None: a signer,
    whose ``args`` say where its root holder is); `stop` ends it (SIGTERM, then SIGKILL)."""

    def __init__(
        self, state: Path | None, log: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.state, self.log = state, log
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        command = [*ca_cli.CLI, "serve", "--bind", f"127.0.0.1:{self.port}"]
        command += ["--state", str(state)] if state is not None else []
        command += ["--workers", "2", "--upkeep-interval", "1", *args]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        try:
            wait_until("the CA to accept connections", self._started, 30, 0.1, retry_on=())
        except (AssertionError, RuntimeError) as error:
            self.stop()
            raise RuntimeError(
                f"serve did not start ({error}): {log.read_text()[-2000:]}"
            ) from None

    def _started(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"serve exited {self.process.returncode}")
        return accepts(self.port)

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


def init_with_provisioner(root: Path) -> None:
    """A new CA state in ``root/state`` and the operator's credential in ``root/prov``."""
    ca_cli.ca("init", "--state", str(root / "state"))
    ca_cli.ca(
        "provisioner",
        "--state",
        str(root / "state"),
        "--name",
        "operator",
        "--out",
        str(root / "prov"),
    )
