"""``make bench-ca``: ``POST /sign`` of hello-mtls-ca beside step-ca, and with 1 and 2 signers.

Side by side (``--compare``): hello-mtls-ca as the chart deploys it by default, a signer pod
(``serve --root-holder`` with ``--sign-bind``: the signing port served by 2 worker processes,
an event loop each, its scratch directory, where its audit trail goes, on memory as the pod's
``/tmp`` volume is) beside its root holder, which takes the records of what it signs into the index;
hello-mtls-ca alone, the root holder serving ``POST /sign`` itself (``ca.signers.replicas: 0``,
2 workers of 8 threads, the audit trail and the index on disk); and step-ca
(`build_step_ca.sh` builds it from the Go module proxy and caches it) set up with a JWK
provisioner, once without a database and once with its default one (badgerv2), all on
127.0.0.1 and on the same kind of CA (a P-256 root and intermediate).

Signers (``--signers``): a root holder and two signers (their signing ports served by one
worker process each, so that one signer cannot take both cores of a 2-core machine), the root
holder's TokenReview answered by the stand-in of ``tests/support``; the load goes to one
signer, then is spread over both.

One load generator for all: ``LOAD_PROCESSES`` processes of ``THREADS`` threads, each thread one
keep-alive HTTPS connection (8 in all) posting P-256 CSRs that carry a DNS and a SPIFFE SAN:
to hello-mtls-ca with the operator's provisioner credential (mTLS) and the names and namespace
in the body; to step-ca with a one-time token of its provisioner (ES256, the same SANs), made
before the slice so that making it costs the servers no CPU. Each round starts new servers,
warms each up, then gives each a slice in turn, the rounds taking each server through every
position; the first answer of each connection and slice is checked (status, the SANs of the
certificate), every other for its status. Server CPU per signature: user + system time of the
server's processes (a signer's with its root holder's), from /proc. Traffic goes to loopback
only, bounded by time and count.

    python benchmarks/bench_ca.py [--rounds 8] [--seconds 2] [--compare|--signers] [--write F]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import http.client
import itertools
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench_tls import Figure, _cpu_seconds, _machine, ratio, write_section
from mtls_contract.identities import spiffe_id
from mtls_contract.name_rules import CLUSTER_DOMAIN

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "hack"))  # the harness the test tiers share

from harness.ca_service import Service, init_with_provisioner  # noqa: E402
from harness.processes import free_port  # noqa: E402
from harness.token_review_api import Token, TokenReviewAPI  # noqa: E402
from harness.waiting import wait_until  # noqa: E402

LOAD_PROCESSES = 2
THREADS = 4
WARM_UP_SECONDS = 1.0
REQUESTS_PER_THREAD_SECOND = 800  # the bound on a slice's requests, far above what it signs
NAME = "bench.demo"
NAMESPACE = "demo"
SPIFFE_ID = spiffe_id(CLUSTER_DOMAIN, NAMESPACE, "default")
PROVISIONER = "bench"
SIGNER_AUDIENCE = "hello-mtls-ca-signer"
SIGNER_ACCOUNT = "system:serviceaccount:hello-mtls:hello-mtls-ca-signer"
BEGIN, END = "<!-- bench-ca:begin -->", "<!-- bench-ca:end -->"
SIGNER = "hello-mtls-ca signer"
COMPARED = (SIGNER, "hello-mtls-ca", "step-ca", "step-ca+db")
SIGNER_KINDS = ("1 signer", "2 signers")
GOAL_RATE, GOAL_CPU = 1.2, 1.0  # hello-mtls-ca / step-ca without a database
MEMORY = Path("/dev/shm")  # a signer pod's /tmp is an emptyDir on memory (the chart)


@dataclasses.dataclass(frozen=True)
class Server:
    """A server under load: its API (``ours`` or ``step``), ports, the pids whose CPU time it
    uses, and the directory of what a client needs (ours: a provisioner credential; step-ca:
    its root and JWK key)."""

    api: str
    ports: list[int]
    pids: list[int]
    credential: Path


# --- the servers --------------------------------------------------------------------------


def build_step_ca() -> Path:
    """The cached step-ca binary, built first if missing (progress on stderr)."""
    done = subprocess.run(
        [str(HERE / "build_step_ca.sh")], stdout=subprocess.PIPE, text=True, check=True
    )
    return Path(done.stdout.strip().splitlines()[-1])


class StepCA:
    """step-ca on 127.0.0.1 with a JWK provisioner, from the PKI in ``work/step``."""

    def __init__(self, binary: Path, work: Path, *, database: bool) -> None:
        self.port = free_port()
        name = "step-ca+db" if database else "step-ca"
        home = work / f"{name}-{self.port}"
        home.mkdir()
        step = work / "step"
        config = {
            "root": str(step / "root.crt"),
            "crt": str(step / "intermediate.crt"),
            "key": str(step / "intermediate.key"),
            "address": f"127.0.0.1:{self.port}",
            "dnsNames": ["127.0.0.1", "localhost"],
            "logger": {"format": "text"},
            "db": {"type": "badgerv2", "dataSource": str(home / "db")} if database else None,
            "authority": {
                "provisioners": [
                    {
                        "type": "JWK",
                        "name": PROVISIONER,
                        "key": json.loads((step / "jwk.json").read_text()),
                        "claims": {"defaultTLSCertDuration": "1h"},
                    }
                ]
            },
        }
        (home / "ca.json").write_text(json.dumps(config, indent=1))
        with (home / "step-ca.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(binary), str(home / "ca.json")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={"HOME": str(home), "STEPPATH": str(home), "PATH": os.environ["PATH"]},
            )
        self.pid = self.process.pid
        self.root = step / "root.crt"
        try:
            wait_until("step-ca to answer", self._healthy, 30, 0.1, retry_on=(OSError,))
        except (AssertionError, RuntimeError) as error:
            self.stop()
            tail = (home / "step-ca.log").read_text()[-2000:]
            raise SystemExit(f"step-ca did not start ({error}): {tail}") from None

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"step-ca exited {self.process.returncode}")
        context = ssl.create_default_context(cafile=str(self.root))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=2)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


def _step_pki(work: Path) -> None:
    """A P-256 root and intermediate (made as hello-mtls-ca makes its own) and a JWK key."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from mtls_ca.authority import CA

    step = work / "step"
    step.mkdir()
    root_pem, _, intermediate_pem, key_pem = CA.create().to_pem()
    (step / "root.crt").write_bytes(root_pem)
    (step / "intermediate.crt").write_bytes(intermediate_pem)
    (step / "intermediate.key").write_bytes(key_pem or b"")
    (step / "intermediate.key").chmod(0o600)
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    public = {"crv": "P-256", "kty": "EC", "x": _b64(numbers.x), "y": _b64(numbers.y)}
    kid = base64.urlsafe_b64encode(
        hashlib.sha256(json.dumps(public, separators=(",", ":"), sort_keys=True).encode()).digest()
    ).rstrip(b"=")
    jwk = {**public, "use": "sig", "alg": "ES256", "kid": kid.decode()}
    (step / "jwk.json").write_text(json.dumps(jwk))
    (step / "jwk-private").write_text(str(key.private_numbers().private_value))


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()


@contextlib.contextmanager
def serving(kind: str, work: Path, step_ca: Path | None) -> Iterator[Server]:
    """Start one server of ``kind`` (`COMPARED`)."""
    if kind == SIGNER:
        with signer_pool(work, 1, deployed=True) as start, start(SIGNER_KINDS[0]) as server:
            yield server
    elif kind == "hello-mtls-ca":
        ours = Service(work / "ours" / "state", work / "ours.log", "--upkeep-interval", "60")
        try:
            yield Server("ours", [ours.port], [ours.process.pid], work / "ours" / "prov")
        finally:
            ours.stop()
    else:
        assert step_ca is not None
        step = StepCA(step_ca, work, database=kind == "step-ca+db")
        try:
            yield Server("step", [step.port], [step.pid], work / "step")
        finally:
            step.stop()


# --- the load generator -------------------------------------------------------------------


class Load:
    """``LOAD_PROCESSES`` load processes, started once, each loading a server per slice."""

    def __init__(self) -> None:
        argv = [sys.executable, __file__, "--load"]
        self._procs = [
            subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(LOAD_PROCESSES)
        ]
        self._expect("ready")

    def _send(self, line: str) -> None:
        for proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.write(line + "\n")
            proc.stdin.flush()

    def _expect(self, word: str) -> list[list[str]]:
        lines = []
        for proc in self._procs:
            assert proc.stdout is not None
            lines.append(proc.stdout.readline().split())
        if any(not line or line[0] != word for line in lines):
            raise SystemExit(f"a load process stopped (expected {word!r}, got {lines})")
        return lines

    def run(self, server: Server, seconds: float) -> Figure:
        """Load ``server`` for ``seconds`` from every load process."""
        count = int(REQUESTS_PER_THREAD_SECOND * seconds) + 100
        ports, pids = server.ports, server.pids
        self._send(f"arm {server.api} {','.join(map(str, ports))} {count} {server.credential}")
        self._expect("armed")
        cpu = sum(_cpu_seconds(pid) for pid in pids)
        self._send(f"go {time.time() + 0.05} {seconds}")
        results = self._expect("done")
        cpu = sum(_cpu_seconds(pid) for pid in pids) - cpu
        failed = sum(int(r[2]) for r in results)
        if failed:
            raise SystemExit(f"{failed} signatures failed on {ports}; see the logs in the work dir")
        done = sum(int(r[1]) for r in results)
        elapsed = max(float(r[3]) for r in results)
        return Figure(done, elapsed, cpu, [done / elapsed])

    def close(self) -> None:
        for proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self._procs:
            proc.wait(30)


def load_process() -> None:
    """One load process, driven over stdin: ``arm API PORTS COUNT DIR`` makes the TLS context
    and (for step-ca, its tokens) the bodies of at most COUNT requests per thread, ``go START
    SECONDS`` loads from START, answering ``done SIGNED FAILED ELAPSED``."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import (
        CertificateSigningRequestBuilder,
        DNSName,
        Name,
        NameAttribute,
        SubjectAlternativeName,
        UniformResourceIdentifier,
    )
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        CertificateSigningRequestBuilder()
        .subject_name(Name([NameAttribute(NameOID.COMMON_NAME, NAME)]))
        .add_extension(
            SubjectAlternativeName([DNSName(NAME), UniformResourceIdentifier(SPIFFE_ID)]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    ours_body = json.dumps(
        {"csr": csr, "names": [NAME], "namespace": NAMESPACE, "duration": "1h"}
    ).encode()
    print("ready", flush=True)
    bodies: list[Iterator[bytes]] = []
    ports: list[int] = []
    context, path = ssl.create_default_context(), "/sign"
    for line in sys.stdin:
        command, *args = line.split()
        if command == "arm":
            api, ports, count, where = (
                args[0],
                [int(p) for p in args[1].split(",")],
                int(args[2]),
                Path(args[3]),
            )
            if api == "ours":
                context = ssl.create_default_context(cafile=str(where / "ca.crt"))
                context.load_cert_chain(where / "tls.crt", where / "tls.key")
                path = "/sign"
                bodies = [itertools.repeat(ours_body, count) for _ in range(THREADS)]
            else:
                context = ssl.create_default_context(cafile=str(where / "root.crt"))
                path = "/1.0/sign"
                jwk = json.loads((where / "jwk.json").read_text())
                jwk_key = ec.derive_private_key(
                    int((where / "jwk-private").read_text()), ec.SECP256R1()
                )
                bodies = [
                    iter(_step_bodies(csr, jwk, jwk_key, ports[i % len(ports)], count))
                    for i in range(THREADS)
                ]
            print("armed", flush=True)
        elif command == "go":
            start_at, seconds = float(args[0]), float(args[1])
            done, failed = _slice(ports, context, path, bodies, start_at, seconds)
            print(f"done {done} {failed} {time.time() - start_at:.4f}", flush=True)


def _slice(
    ports: list[int],
    context: ssl.SSLContext,
    path: str,
    bodies: list[Iterator[bytes]],
    start_at: float,
    seconds: float,
) -> tuple[int, int]:
    """`THREADS` keep-alive clients, thread i on ``ports[i % len(ports)]``: (signed, failed)."""
    results = [(0, 0)] * THREADS

    def client(i: int) -> None:
        results[i] = _client(ports[i % len(ports)], context, path, bodies[i], start_at, seconds)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r[0] for r in results), sum(r[1] for r in results)


def _step_bodies(csr: str, jwk: dict[str, str], key: Any, port: int, count: int) -> list[bytes]:
    """One-time tokens of the JWK provisioner for ``csr``'s names, in sign request bodies."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    header = _b64json({"alg": "ES256", "kid": jwk["kid"], "typ": "JWT"})
    now = int(time.time())
    audience = [f"https://127.0.0.1:{port}/1.0/sign", "https://127.0.0.1/1.0/sign"]
    bodies = []
    for _ in range(count):
        claims = {
            "iss": PROVISIONER,
            "sub": NAME,
            "aud": audience,
            "sans": [NAME, SPIFFE_ID],
            "iat": now,
            "nbf": now - 1,
            "exp": now + 240,
            "jti": secrets.token_hex(16),
        }
        signing_input = header + b"." + _b64json(claims)
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = base64.urlsafe_b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        token = signing_input + b"." + signature.rstrip(b"=")
        bodies.append(json.dumps({"csr": csr, "ott": token.decode()}).encode())
    return bodies


def _b64json(value: object) -> bytes:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).rstrip(b"=")


def _client(
    port: int,
    context: ssl.SSLContext,
    path: str,
    bodies: Iterator[bytes],
    start_at: float,
    seconds: float,
) -> tuple[int, int]:
    """One keep-alive connection posting ``bodies`` for ``seconds``: (signed, failed)."""
    time.sleep(max(0.0, start_at - time.time()))
    deadline = start_at + seconds
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    headers = {"Content-Type": "application/json"}
    done = failed = 0
    try:
        for body in bodies:
            if time.time() >= deadline:
                break
            try:
                conn.request("POST", path, body, headers)
                answer = conn.getresponse()
                data = answer.read()
                ok = answer.status in (200, 201) and (done > 0 or _names_in(data))
            except (OSError, http.client.HTTPException):
                conn.close()
                ok = False
            done += ok
            failed += not ok
        else:
            failed += 1  # ran out of bodies: a bound that should never be reached
    finally:
        conn.close()
    return done, failed


def _names_in(answer: bytes) -> bool:
    """Whether the certificate in a sign answer (ours or step-ca's) carries both SANs."""
    from cryptography import x509

    document = json.loads(answer)
    pem = document.get("certificate") or document.get("crt")
    cert = x509.load_pem_x509_certificate(pem.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sans.get_values_for_type(x509.DNSName) == [NAME] and sans.get_values_for_type(
        x509.UniformResourceIdentifier
    ) == [SPIFFE_ID]


# --- the measurements ---------------------------------------------------------------------


def measure(
    kinds: tuple[str, ...],
    load: Load,
    seconds: float,
    rounds: int,
    start: Callable[[str], contextlib.AbstractContextManager[Server]],
) -> dict[str, Figure]:
    """Each round: servers of ``kinds`` from ``start(kind)``, each warmed up, then one slice
    each, the rounds going through `orders` of ``kinds``."""
    figures = {kind: Figure() for kind in kinds}
    orders = rotations(kinds)
    for round_ in range(rounds):
        order = orders[round_ % len(orders)]
        slices = {}
        with contextlib.ExitStack() as stack:
            servers = {kind: stack.enter_context(start(kind)) for kind in order}
            for kind in order:
                load.run(servers[kind], WARM_UP_SECONDS)
            for kind in order:
                slices[kind] = got = load.run(servers[kind], seconds)
                figure = figures[kind]
                figure.requests += got.requests
                figure.seconds += got.seconds
                figure.cpu_seconds += got.cpu_seconds
                figure.rates += got.rates
        print(
            f"  round {round_ + 1}/{rounds}: "
            + ", ".join(
                f"{k} {slices[k].rate:.0f}/s {cpu_ms(slices[k]):.2f} ms CPU" for k in kinds
            ),
            flush=True,
        )
    return figures


def rotations(kinds: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The orders of the rounds: every rotation of ``kinds`` and of ``kinds`` reversed, so that
    in as many rounds each kind is in each position as often, and follows each other kind as
    often (for 3 kinds: every order)."""
    backwards = kinds[::-1]
    return [kinds[i:] + kinds[:i] for i in range(len(kinds))] + [
        backwards[i:] + backwards[:i] for i in range(len(kinds))
    ]


def cpu_ms(figure: Figure) -> float:
    """Server CPU time per signature, in ms."""
    return 1000 * figure.cpu_seconds / figure.requests if figure.requests else float("nan")


@contextlib.contextmanager
def signer_pool(work: Path, count: int = 2, *, deployed: bool = False) -> Iterator[Any]:
    """A root holder and ``count`` signers, their scratch directories on memory; yields
    ``start(kind)`` for `measure`: the signers are long-lived, a "round" only picks one or both
    (`SIGNER_KINDS`).

    ``deployed``: each signer's signing port served as the chart runs it, by 2 worker
    processes of its own; else by one, so that one signer cannot take both cores of the bench
    machine and a second one has room to add. Either way, an event loop each
    (`mtls_ca.event_worker`).
    """
    pki = Path(tempfile.mkdtemp(prefix="signers-", dir=work))
    init_with_provisioner(pki)
    scratch = Path(tempfile.mkdtemp(prefix="hello-mtls-bench-ca.", dir=_memory(work)))
    tokens = {"signer-token": Token(SIGNER_AUDIENCE, SIGNER_ACCOUNT, pod_name="bench-signer")}
    (pki / "signer-token").write_text("signer-token\n")
    api = TokenReviewAPI(tokens)
    started: list[Service] = []
    try:
        material_port = free_port()
        env = {"KUBECONFIG": str(api.kubeconfig(pki / "kubeconfig")), "KUBERNETES_SERVICE_HOST": ""}
        started.append(
            Service(
                pki / "state",
                pki / "root-holder.log",
                f"--material-bind=127.0.0.1:{material_port}",
                "--signer-service-account=hello-mtls/hello-mtls-ca-signer",
                f"--signer-audience={SIGNER_AUDIENCE}",
                env=env,
            )
        )
        sign_ports = []
        for i in range(count):
            sign_port = free_port()
            serving = [f"--sign-bind=127.0.0.1:{sign_port}"]
            serving += [] if deployed else ["--sign-workers=1", "--workers=1"]
            started.append(
                Service(
                    None,
                    pki / f"signer-{i}.log",
                    f"--root-holder=https://127.0.0.1:{material_port}",
                    f"--root-ca={pki / 'prov' / 'ca.crt'}",
                    f"--token-file={pki / 'signer-token'}",
                    *serving,
                    "--upkeep-interval=60",
                    env={"TMPDIR": str(scratch)},
                )
            )
            sign_ports.append(sign_port)
        root_holder, signers = started[0], started[1:]

        @contextlib.contextmanager
        def start(kind: str) -> Iterator[Server]:
            chosen = signers[: 1 if kind == SIGNER_KINDS[0] else 2]
            ports = sign_ports[: len(chosen)]
            pids = [s.process.pid for s in [root_holder, *chosen]]
            yield Server("ours", ports, pids, pki / "prov")

        yield start
    finally:
        for service in reversed(started):
            service.stop()
        api.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _memory(work: Path) -> Path:
    """Where a signer's scratch directory goes: on memory where the machine has it."""
    return MEMORY if MEMORY.is_dir() and os.access(MEMORY, os.W_OK) else work


def report(
    compared: dict[str, Figure] | None,
    signers: dict[str, Figure] | None,
    before: str,
    after: str,
    seconds: float,
    rounds: int,
) -> str:
    parts = [
        BEGIN,
        "## bench-ca: `POST /sign` beside step-ca, and with 1 and 2 signers (`make bench-ca`)",
        "",
        f"One load generator for all: {LOAD_PROCESSES} processes x {THREADS} threads on "
        "loopback, each thread one keep-alive",
        "HTTPS connection (8 in all), posting P-256 CSRs with a DNS and a SPIFFE SAN "
        "(hello-mtls-ca: the operator's",
        "mTLS credential; step-ca: a one-time JWK provisioner token per request, made before "
        f"the slice). {rounds} rounds;",
        f"each starts new servers, warms each up ({WARM_UP_SECONDS:g} s) and gives each one "
        f"{seconds:g} s slice, the rounds taking",
        "each server through every position. Rates are totals over the rounds; server CPU per "
        "signature is user +",
        "system time of the server's processes (/proc; a signer's with its root holder's). "
        "Clients and servers",
        "share the machine's cores: read the load.",
        "",
        f"- start: {before}",
        f"- end:   {after}",
    ]
    if compared:
        parts += [
            "",
            "| server | signatures/s | server CPU ms/signature |",
            "|---|---|---|",
        ]
        labels = {
            SIGNER: "hello-mtls-ca signer pod, as deployed (2 signing workers, an event loop "
            "each), with its root holder",
            "hello-mtls-ca": "hello-mtls-ca root holder alone (`serve`, 2 workers x 8 threads)",
            "step-ca": "step-ca v0.30.2 without a database",
            "step-ca+db": "step-ca v0.30.2, default database (badgerv2)",
        }
        parts += [f"| {labels[k]} | {f.rate:.0f} | {cpu_ms(f):.2f} |" for k, f in compared.items()]
        parts.append("")
        for kind, name in ((SIGNER, "the signer pod"), ("hello-mtls-ca", "the root holder alone")):
            estimate, low, high = ratio(compared[kind], compared["step-ca"])
            cpu = cpu_ms(compared[kind]) / cpu_ms(compared["step-ca"])
            met = estimate >= GOAL_RATE and cpu <= GOAL_CPU
            parts += [
                f"{name} / step-ca without a database: signatures/s {estimate:.2f} "
                f"(95 % interval {low:.2f}–{high:.2f}),",
                f"CPU per signature {cpu:.2f}. Goal ≥ {GOAL_RATE:g} and ≤ {GOAL_CPU:g}: "
                f"{'met' if met else 'NOT met'}.",
            ]
    if signers:
        estimate, low, high = ratio(signers["2 signers"], signers["1 signer"])
        parts += [
            "",
            "Signers: a root holder and 2 signers (1 signing worker each, so that one cannot "
            "take both cores);",
            "the load on one signer, then spread over both:",
            "",
            "| signers | signatures/s | server CPU ms/signature |",
            "|---|---|---|",
        ]
        parts += [f"| {k} | {f.rate:.0f} | {cpu_ms(f):.2f} |" for k, f in signers.items()]
        parts += [
            "",
            f"2 signers / 1 signer: {estimate:.2f} (95 % interval {low:.2f}–{high:.2f}).",
        ]
    parts.append(END)
    return "\n".join(parts) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0, help="per slice (default %(default)s)")
    p.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="rounds; a multiple of 8 takes the 4 servers through every position (default 8)",
    )
    p.add_argument("--compare", action="store_true", help="only hello-mtls-ca beside step-ca")
    p.add_argument("--signers", action="store_true", help="only 1 and 2 signers")
    p.add_argument("--write", type=Path, help="update this section of a RESULTS.md")
    p.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.load:
        load_process()
        return 0
    if args.write and (args.compare or args.signers):
        p.error("--compare and --signers measure a part: they cannot --write the results")
    if args.rounds < 2:
        p.error("--rounds: at least 2, for an interval")
    both = not args.compare and not args.signers
    step_ca = build_step_ca() if args.compare or both else None
    with tempfile.TemporaryDirectory(prefix="hello-mtls-bench-ca.") as tmp:
        work = Path(tmp)
        (work / "ours").mkdir()
        init_with_provisioner(work / "ours")
        _step_pki(work)
        before = _machine()
        print(f"bench-ca: {before}", flush=True)
        load = Load()
        compared = signers = None
        try:
            if step_ca is not None:
                print(f"bench-ca: {', '.join(COMPARED)}", flush=True)
                compared = measure(
                    COMPARED,
                    load,
                    args.seconds,
                    args.rounds,
                    lambda kind: serving(kind, work, step_ca),
                )
            if args.signers or both:
                print("bench-ca: a root holder and 1, then 2 signers", flush=True)
                with signer_pool(work) as start:
                    signers = measure(SIGNER_KINDS, load, args.seconds, args.rounds, start)
        finally:
            load.close()
        text = report(compared, signers, before, _machine(), args.seconds, args.rounds)
    print(text)
    if args.write:
        write_section(args.write, BEGIN, END, text)
        print(f"bench-ca: wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
