"""``make demo``: the CA service, an mTLS server and two clients as local processes, rotating live.

The demo plays the operator's part: it makes a key and a CSR per identity, has the CA service
sign it (``POST /sign`` over mTLS with an admin credential) and writes the Secret files into
a kubelet-style directory (timestamped directory + atomic ``..data`` swap). Certificates live
about a minute and are re-issued every ~20 s; the CA rotates its root once (``POST
/rotate-root``: both roots trusted → new root signs → old root dropped), each step followed by a
re-issue. The server and the clients are never restarted: they pick every change up from disk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from mtls_ca.tls_profiles import policy_bytes
from mtls_context import requests_adapter
from mtls_context.layout import version_files, write_version
from mtls_contract.ca_api import parse_sign_answer
from mtls_contract.durations import parse_duration
from mtls_operator.certs import new_key_and_csr
from mtls_operator.claims import Claim

BIN = Path(sys.executable).parent
CLIENTS = ("client-a", "client-b")
ROOT_ROTATION = ("idle", "both-trusted", "new-signing")  # the phase each step starts from
LIFETIME = "1m"


class Demo:
    def __init__(self, work: Path, seconds: float, reissue_every: float) -> None:
        self.work = work
        self.seconds = seconds
        self.reissue_every = reissue_every
        self.state = work / "ca"
        self.started = time.monotonic()
        self.processes: list[subprocess.Popen[str]] = []
        self.ok = dict.fromkeys(CLIENTS, 0)
        self.failed = dict.fromkeys(CLIENTS, 0)
        self.print_lock = threading.Lock()
        self.ca_url = ""

    def say(self, who: str, message: str) -> None:
        with self.print_lock:
            print(f"[{time.monotonic() - self.started:6.1f}s] {who:<9} {message}", flush=True)

    def run(self) -> int:
        self.say("ca", f"hello-mtls-ca init in {self.state}")
        self.ca_cli("init", "--min-duration=30s")
        self.renew_admin()
        ca_port = _free_port()
        self.start(
            "ca",
            [
                str(BIN / "hello-mtls-ca"),
                "serve",
                f"--state={self.state}",
                f"--bind=127.0.0.1:{ca_port}",
                "--workers=1",
                "--upkeep-interval=2",
            ],
        )
        self.ca_url = f"https://localhost:{ca_port}"
        _wait_for_port(ca_port)
        with requests_adapter.session(self.work / "admin", check_interval=0) as self.session:
            self.call("GET", "/healthz")
            self.say("ca", f"CA service on {self.ca_url}/ (POST /sign, POST /rotate-root)")
            self.issue_all()
            port = _free_port()
            self.start(
                "server",
                [
                    str(BIN / "hello-mtls-server"),
                    f"--bind=127.0.0.1:{port}",
                    f"--cert-dir={self.work / 'server'}",
                    "--workers=1",
                ],
            )
            _wait_for_port(port)
            self.say("server", f"listening on https://localhost:{port}/ (gunicorn, gthread)")
            for name in CLIENTS:
                self.start(
                    name,
                    [
                        str(BIN / "hello-mtls-client"),
                        f"--url=https://localhost:{port}/",
                        f"--cert-dir={self.work / name}",
                        "--interval=2",
                    ],
                )
            self.rotate_until_deadline()
            return self.summary()

    def rotate_until_deadline(self) -> None:
        """Re-issue every certificate each ``reissue_every`` seconds, with one root-rotation
        step per re-issue after the first, until ``seconds`` have passed since the start and the
        rotation is done (its last step and one re-issue after it): a slow machine sees the
        whole rotation too, later."""
        cycle = 0
        rotated = len(ROOT_ROTATION) + 2  # the cycle after the last step
        next_reissue = time.monotonic() + self.reissue_every
        deadline = self.started + self.seconds
        while time.monotonic() < deadline or cycle < rotated:
            time.sleep(min(0.2, max(0.0, next_reissue - time.monotonic())))
            if any(p.poll() is not None for p in self.processes):
                self.say("demo", "a process exited early; stopping")
                return
            if time.monotonic() < next_reissue:
                continue
            next_reissue += self.reissue_every
            cycle += 1
            step = cycle - 2  # leave one plain re-issue first, then one rotation step per cycle
            if 0 <= step < len(ROOT_ROTATION):
                status = self.call("POST", "/rotate-root", {"from": ROOT_ROTATION[step]})
                self.say(
                    "ca",
                    f"ROOT ROTATION step {step + 1}/3: phase '{status['phase']}', "
                    f"{len(status['roots'])} root(s) in every bundle",
                )
                self.renew_admin()
            self.issue_all()

    def summary(self) -> int:
        self.say("demo", "stopping")
        for proc in reversed(self.processes):  # clients first, so no request meets a dead server
            _stop(proc)
        for name in CLIENTS:
            self.say("demo", f"{name}: {self.ok[name]} hellos, {self.failed[name]} failed")
        status = json.loads(self.ca_cli("status"))
        self.say("demo", f"CA phase '{status['phase']}' with {len(status['roots'])} root(s)")
        return 1 if sum(self.failed.values()) else 0

    def ca_cli(self, *args: str) -> str:
        """The ``hello-mtls-ca`` command line: creating the CA and the admin credential."""
        done = subprocess.run(
            [str(BIN / "hello-mtls-ca"), *args, f"--state={self.state}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise SystemExit(f"hello-mtls-ca {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def renew_admin(self) -> None:
        """A credential from the current signing root, so it stays trusted when the old root
        goes (in a cluster the CA renews the operator's credential itself)."""
        # An admin's: the demo signs "localhost" (no namespace) and starts the root rotation.
        self.ca_cli("provisioner", "--role=admin", "--name=demo", f"--out={self.work / 'admin'}")

    def call(self, method: str, path: str, body: object = None) -> Any:
        """Call the CA service over mTLS with the admin credential."""
        response = self.session.request(method, self.ca_url + path, json=body, timeout=30)
        if not response.ok:
            raise SystemExit(f"CA {method} {path}: {response.status_code} {response.text.strip()}")
        return response.json()

    def issue_all(self) -> None:
        issued = []
        for name, out in [("localhost", "server"), *((f"{c}.demo", c) for c in CLIENTS)]:
            issued.append(f"{out} {self.sign(name, self.work / out)[:8]}")
        self.say("ca", "signed " + ", ".join(issued) + f" (lifetime {LIFETIME})")

    def sign(self, name: str, out: Path) -> str:
        """Key and CSR as the operator makes them, certificate from the CA service, files
        written like the kubelet."""
        claim = Claim("demo", out.name, (name,), parse_duration(LIFETIME), "demo")
        key_pem, csr_pem = new_key_and_csr(claim)
        body = {"csr": csr_pem.decode(), "names": [name], "duration": LIFETIME}
        answer = parse_sign_answer(self.call("POST", "/sign", body))
        write_version(
            out,
            version_files(answer.certificate, key_pem, answer.ca, policy_bytes(answer.tls_policy)),
        )
        return answer.serial

    def start(self, name: str, argv: list[str]) -> None:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches only the demo, which stops them in order
        )
        self.processes.append(proc)
        assert proc.stdout is not None and proc.stderr is not None
        for stream in (proc.stdout, proc.stderr):
            threading.Thread(target=self.follow, args=(name, stream), daemon=True).start()

    def follow(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip()
            if line.startswith("{") and name == "ca":
                continue  # the CA's audit records; the demo says itself what it had signed
            if line.startswith("{"):
                self.hello(name, json.loads(line))
            elif "reloaded" in line or "keeping" in line or "rror" in line:
                message = line.split(": ", 1)[-1]
                self.say(name, re.sub(r"(serial \w{8})\w+", r"\1", message))

    def hello(self, name: str, line: dict[str, object]) -> None:
        if line["error"] is None:
            self.ok[name] += 1
            server, own = str(line["server_serial"])[:8], str(line["client_serial"])[:8]
            self.say(name, f"{line['status']} {line['body']}  (server {server}, me {own})")
        else:
            self.failed[name] += 1
            self.say(name, f"FAILED: {line['error']}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing listened on port {port} within {timeout} s")


def _stop(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
    else:
        with tempfile.TemporaryDirectory(prefix="hello-mtls-demo.") as work:
            yield Path(work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("DEMO_SECONDS", 120)),
        help="how long to run at least; it also runs until the root rotation is done"
        " (env DEMO_SECONDS; default %(default)s)",
    )
    parser.add_argument(
        "--reissue-every",
        type=float,
        default=20.0,
        help="seconds between re-issues (default %(default)s)",
    )
    parser.add_argument("--workdir", type=Path, help="keep CA state and certificates here")
    args = parser.parse_args()
    with _workdir(args.workdir) as work:
        demo = Demo(work, args.seconds, args.reissue_every)
        try:
            return demo.run()
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return demo.summary()


if __name__ == "__main__":
    sys.exit(main())
