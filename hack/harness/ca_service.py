"""A real ``hello-mtls-ca serve`` on 127.0.0.1 and HTTPS sessions with its credentials."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import requests

from harness import ca_cli, processes
from harness.token_review_api import Token, TokenReviewAPI
from harness.waiting import accepts, wait_until
from mtls_context import layout


class Service:
    """One ``serve`` process group (extra ``args`` go to ``serve``; ``state`` None: a signer,
    whose ``args`` say where its root holder is); `stop` ends it (SIGTERM, then SIGKILL).
    ``wait``: return once it accepts connections (else at once, for a CA that waits)."""

    def __init__(
        self,
        state: Path | None,
        log: Path,
        *args: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> None:
        self.state, self.log = state, log
        self.port = processes.free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        command = [*ca_cli.CLI, "serve", "--bind", f"127.0.0.1:{self.port}"]
        command += ["--state", str(state)] if state is not None else []
        command += ["--workers", "2", "--upkeep-interval", "1", *args]
        self.process = processes.start(command, log, env)
        if not wait:
            return
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
        processes.stop(self.process, timeout=15)


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


def init_with_provisioner(root: Path, admin: str | None = None) -> None:
    """A new CA state in ``root/state``, the operator's credential in ``root/prov`` and, given
    ``admin``, that admin's in ``root/<admin>``."""
    state = str(root / "state")
    ca_cli.ca("init", "--state", state)
    ca_cli.ca("provisioner", "--state", state, "--name", "operator", "--out", str(root / "prov"))
    if admin is not None:
        credential = ("--role", "admin", "--name", admin, "--out", str(root / admin))
        ca_cli.ca("provisioner", "--state", state, *credential)


@contextlib.contextmanager
def root_holder_and_signer(
    state: Path,
    work: Path,
    root_ca: Path,
    *holder_args: str,
    signer_args: tuple[str, ...] = (),
    wait: bool = True,
) -> Iterator[tuple[Service, Service]]:
    """A root holder of ``state`` (``holder_args`` go to its ``serve``) with its material port,
    and one signer (trusting ``root_ca``; ``signer_args`` go to its ``serve``) that proves
    itself to it with a token the TokenReview stand-in vouches for; their logs, token and
    kubeconfig go to ``work``. ``wait``: as `Service`'s."""
    audience, account = "hello-mtls-ca-signer", "system:serviceaccount:hello-mtls:signer"
    (work / "token").write_text("signer-token\n")
    api = TokenReviewAPI({"signer-token": Token(audience, account, pod_name="signer-0")})
    env = {"KUBECONFIG": str(api.kubeconfig(work / "kubeconfig")), "KUBERNETES_SERVICE_HOST": ""}
    material_port = processes.free_port()
    holder = None
    signer = None
    try:
        holder = Service(
            state,
            work / "root-holder.log",
            f"--material-bind=127.0.0.1:{material_port}",
            "--signer-service-account=hello-mtls/signer",
            f"--signer-audience={audience}",
            *holder_args,
            env=env,
            wait=wait,
        )
        signer = Service(
            None,
            work / "signer.log",
            f"--root-holder=https://127.0.0.1:{material_port}",
            f"--root-ca={root_ca}",
            f"--token-file={work / 'token'}",
            "--fetch-interval=1",
            *signer_args,
            wait=wait,
        )
        yield holder, signer
    finally:
        for service in (signer, holder):
            if service is not None:
                service.stop()
        api.stop()
