"""``make bench-tls``: new-connection mTLS handshakes/s and keep-alive requests/s, side by side.

The servers compared run the same app on the same certificates (issued by ``hello-mtls-ca``):

  gunicorn   ours   ``hello-mtls-server``: gthread, cached context that reloads on change
             stock  gunicorn configured like smallstep's hello-mtls py-gunicorn example:
                    certfile, keyfile, ca_certs, cert_reqs, ssl_version and ciphers in the
                    config, default sync workers; gunicorn then builds a new SSLContext from
                    the files for every connection
             fixed  ours with a context built once and never reloaded (the ceiling)
  asyncio, uvicorn, aiohttp, hypercorn (the recipes of ``examples/``):
             ours   the recipe as it is: the stack given one ``ReloadingServerContext``
             fixed  the same recipe given a context built once from the same files
                    (``fixed_context.py``)

On a shared VM the same server's rate moves by 10-20 % from one second to the next (its CPU
time per request too: the host, not our processes), and two identical processes can differ for
a whole run. So each comparison is made of many short paired rounds: every round starts new
server processes of each kind, warms them up (a gunicorn worker that is still booting halves
its server's first second) and loads each one slice per mode, the rounds going through every
order of the servers in turn; a ratio is the geometric mean of the rounds' ratios, given with
its 95 % confidence interval.

The load processes start once and are driven slice by slice over a pipe; they send traffic
to loopback only, bounded by time and count.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import itertools
import math
import os
import platform
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The harness the tiers share: one wait (hack/harness/waiting.py), one free port, the recipes'
# commands.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hack"))
from harness import example_servers  # noqa: E402
from harness.processes import free_port  # noqa: E402
from harness.waiting import wait_until  # noqa: E402

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
WORKERS = 2
THREADS = 4
LOAD_PROCESSES = 2
MAX_REQUESTS_PER_SLICE = 200_000
WARM_UP_SECONDS = 1.0
BEGIN, END = "<!-- bench-tls:begin -->", "<!-- bench-tls:end -->"
GUNICORN = ("ours", "stock", "fixed")
GUNICORN_MODES = ("handshake", "handshake-nagle", "keepalive")
STACKS = ("asyncio", "uvicorn", "aiohttp", "hypercorn")
STACK_MODES = ("handshake", "keepalive")
# (mode, server, compared with, at least this ratio), the targets of docs/design.md
GUNICORN_TARGETS = [
    ("handshake", "ours", "stock", 1.1),
    ("handshake-nagle", "ours", "stock", 1.1),
    ("handshake", "ours", "fixed", 0.95),
    ("keepalive", "ours", "stock", 3.0),
]
STACK_TARGETS = [("handshake", "ours", "fixed", 0.95), ("keepalive", "ours", "fixed", 0.95)]
MODE_NAMES = {
    "handshake": "handshakes/s",
    "handshake-nagle": "handshakes/s from clients without TCP_NODELAY",
    "keepalive": "keep-alive req/s",
}

STOCK_CONF = """\
# Like smallstep/autocert examples/hello-mtls/py-gunicorn/gunicorn.conf
bind = "127.0.0.1:{port}"
workers = {workers}
certfile = "{dir}/tls.crt"
keyfile = "{dir}/tls.key"
ca_certs = "{dir}/ca.crt"
cert_reqs = 2  # ssl.CERT_REQUIRED
ssl_version = 5  # ssl.PROTOCOL_TLSv1_2 (gunicorn >= 23 ignores it and says so)
ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"
control_socket_disable = True
"""


def server_argv(kind: str, port: int, work: Path) -> tuple[list[str], dict[str, str]]:
    cert_dir = work / "server"
    env = {
        "HELLO_MTLS_BIND": f"127.0.0.1:{port}",
        "HELLO_MTLS_CERT_DIR": str(cert_dir),
        "HELLO_MTLS_WORKERS": str(WORKERS),
        "HELLO_MTLS_THREADS": str(THREADS),
    }
    app = "mtls_server:create_app()"
    if ":" in kind:  # an event-loop stack's recipe: ours or fixed
        stack, variant = kind.split(":")
        argv = example_servers.argv(stack, port)
        if variant == "fixed":
            argv = [sys.executable, str(HERE / "fixed_context.py"), *argv[1:]]
        return argv, example_servers.env(port, cert_dir, check_interval=1.0)
    if kind == "ours":
        return [str(BIN / "gunicorn"), "-c", "python:mtls_server.gunicorn_conf", app], env
    if kind == "fixed":
        return [str(BIN / "gunicorn"), "-c", str(HERE / "fixed_context_conf.py"), app], env
    conf = work / "stock.conf.py"
    conf.write_text(STOCK_CONF.format(port=port, workers=WORKERS, dir=cert_dir))
    return [str(BIN / "gunicorn"), "-c", str(conf), app], env


@contextlib.contextmanager
def serving(kinds: tuple[str, ...], work: Path) -> Iterator[dict[str, tuple[int, int]]]:
    """Start one server of each kind (together); yield their ports and master pids once each
    answers over TLS 1.3."""
    started: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        for kind in kinds:
            port = free_port()
            argv, env = server_argv(kind, port, work)
            with open(work / f"{kind}.log", "ab") as log:
                started[kind] = (
                    port,
                    subprocess.Popen(
                        argv,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, **env},
                        start_new_session=True,
                    ),
                )
        for kind, (port, server) in started.items():
            version = _wait_until_serving(port, work, server)
            if version != "TLSv1.3":
                raise SystemExit(f"{kind} negotiated {version}, expected TLSv1.3 for all servers")
        yield {kind: (port, server.pid) for kind, (port, server) in started.items()}
    finally:
        for _, server in started.values():
            os.killpg(server.pid, signal.SIGTERM)
        for _, server in started.values():
            server.wait(20)


class Load:
    """``LOAD_PROCESSES`` load processes, started once, that load one server per slice."""

    def __init__(self, cert_dir: Path) -> None:
        argv = [sys.executable, __file__, "--load", str(cert_dir)]
        self._procs = [
            subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(LOAD_PROCESSES)
        ]
        for proc in self._procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit("a load process did not start")

    def run(self, mode: str, port: int, seconds: float) -> tuple[int, float]:
        """Load ``port`` from every load process at once; return (requests, seconds)."""
        start_at = time.time() + 0.05
        for proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{mode} {port} {seconds} {start_at}\n")
            proc.stdin.flush()
        results = []
        for proc in self._procs:
            assert proc.stdout is not None
            results.append(proc.stdout.readline().split())
        if any(len(r) != 3 for r in results):
            raise SystemExit(f"a load process stopped during a {mode} slice on port {port}")
        failed = sum(int(r[1]) for r in results)
        if failed:
            raise SystemExit(f"{failed} {mode} requests failed on port {port}")
        return sum(int(r[0]) for r in results), max(float(r[2]) for r in results)

    def close(self) -> None:
        for proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self._procs:
            proc.wait(30)


def _cpu_seconds(master: int) -> float:
    """User + system CPU time of a server process and its children (workers), from /proc."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == master or int(fields[1]) == master:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def load_process(cert_dir: Path) -> None:
    """One load process: for each ``<mode> <port> <seconds> <start at>`` line on stdin, load the
    server from ``start at`` for ``seconds`` and print ``<succeeded> <failed> <elapsed>``."""
    from mtls_context import client_context
    from mtls_context.requests_adapter import session

    context = client_context(cert_dir)
    print("ready", flush=True)
    for line in sys.stdin:
        mode, port, seconds, start_at = line.split()
        time.sleep(max(0.0, float(start_at) - time.time()))
        if mode == "keepalive":
            with session(cert_dir) as s:
                print(*_slice(mode, int(port), float(seconds), context, s), flush=True)
        else:
            print(*_slice(mode, int(port), float(seconds), context, None), flush=True)


def _slice(
    mode: str, port: int, seconds: float, context: ssl.SSLContext, s: Any
) -> tuple[int, int, float]:
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    url = f"https://localhost:{port}/"
    done = failed = 0
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline and done + failed < MAX_REQUESTS_PER_SLICE:
        try:
            if mode in ("handshake", "handshake-nagle"):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                    # urllib3, curl and Go set TCP_NODELAY; "handshake-nagle" is a client that
                    # does not (its request can wait for a delayed ACK, 40 ms on Linux).
                    if mode == "handshake":
                        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    with context.wrap_socket(raw, server_hostname="localhost") as tls:
                        tls.sendall(request)
                        ok = tls.recv(4096).startswith(b"HTTP/1.1 200 ")
            else:
                ok = s.get(url, timeout=10).status_code == 200
        except OSError:
            ok = False
        done += ok
        failed += not ok
    return done, failed, time.monotonic() - start


def _wait_until_serving(port: int, work: Path, server: subprocess.Popen[bytes]) -> str:
    from mtls_context import client_context

    context = client_context(work / "client")

    def version() -> str | None:
        if server.poll() is not None:
            raise SystemExit(f"server exited: see {work}")
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return str(tls.version()) if tls.recv(4096).startswith(b"HTTP/1.1 200 ") else None

    what = f"the server on port {port} to answer 200"
    return wait_until(what, version, 30, interval=0.1, retry_on=(OSError,))


def _issue(work: Path) -> None:
    def ca(*args: str) -> None:
        subprocess.run(
            [str(BIN / "hello-mtls-ca"), *args, f"--state={work / 'ca'}"],
            check=True,
            capture_output=True,
        )

    ca("init")
    ca("issue", "--name=localhost", f"--out={work / 'server'}")
    ca("issue", "--name=bench-client.test", f"--out={work / 'client'}")


def _machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()}, "
        f"load average {load}, Python {platform.python_version()}, {ssl.OPENSSL_VERSION}"
    )


@dataclasses.dataclass
class Figure:
    """What one kind of server did under one mode, summed over the rounds."""

    requests: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    rates: list[float] = dataclasses.field(default_factory=list)  # one per round

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / self.requests


Figures = dict[tuple[str, str], Figure]


def measure(
    kinds: tuple[str, ...],
    modes: tuple[str, ...],
    work: Path,
    load: Load,
    seconds: float,
    rounds: int,
) -> Figures:
    """Each round: new servers of ``kinds``, one slice of each under each of ``modes``.

    The rounds go through every order of ``kinds`` in turn, so that each server comes after
    each other one as often (with the order only rotated, gunicorn ours always came right after
    fixed and measured 0.93 of it, where the two alone measured 1.00).
    """
    figures = {(k, m): Figure() for k in kinds for m in modes}
    orders = list(itertools.permutations(kinds))
    for round_ in range(rounds):
        order = orders[round_ % len(orders)]
        with serving(order, work) as servers:
            for kind in order:  # every worker booted and warm, as in a server that has run
                load.run(modes[0], servers[kind][0], WARM_UP_SECONDS)
            for mode in modes:
                for kind in order:
                    port, pid = servers[kind]
                    cpu = _cpu_seconds(pid)
                    requests, elapsed = load.run(mode, port, seconds)
                    figure = figures[kind, mode]
                    figure.cpu_seconds += _cpu_seconds(pid) - cpu
                    figure.requests += requests
                    figure.seconds += elapsed
                    figure.rates.append(requests / elapsed)
        print(
            f"  round {round_ + 1}/{rounds}: "
            + ", ".join(f"{k} {m} {figures[k, m].rates[-1]:.0f}/s" for k in kinds for m in modes),
            flush=True,
        )
    return figures


def ratio(a: Figure, b: Figure) -> tuple[float, float, float]:
    """The geometric mean of the rounds' rate ratios a/b and its 95 % confidence interval."""
    logs = [math.log(x / y) for x, y in zip(a.rates, b.rates, strict=True)]
    mean = statistics.fmean(logs)
    half = _t975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def _t975(df: int) -> float:
    """Student's t 97.5 % quantile by its Cornish-Fisher expansion in 1/df (within 0.2 % from
    5 degrees of freedom on): the standard library has the normal distribution only."""
    z = statistics.NormalDist().inv_cdf(0.975)
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def verdicts(figures: Figures) -> list[str]:
    """``target | ratio | interval | met`` for each target whose servers ``figures`` holds."""
    rows = []
    for stack in ("gunicorn", *STACKS):
        prefix = "" if stack == "gunicorn" else f"{stack}:"
        for mode, a, b, at_least in GUNICORN_TARGETS if stack == "gunicorn" else STACK_TARGETS:
            if (prefix + a, mode) not in figures:
                continue
            estimate, low, high = ratio(figures[prefix + a, mode], figures[prefix + b, mode])
            rows.append(
                f"{stack} {MODE_NAMES[mode]}: {a} ≥ {at_least:g} × {b} | {estimate:.2f} | "
                f"{low:.2f}–{high:.2f} | {'met' if estimate >= at_least else 'NOT met'}"
            )
    return rows


def report(figures: Figures, before: str, after: str, seconds: float, rounds: int) -> str:
    def rates(kind: str, modes: tuple[str, ...]) -> str:
        return " | ".join(f"{figures[kind, m].rate:.0f}" for m in modes)

    def cpu(kind: str) -> str:
        return f"{figures[kind, 'handshake'].cpu_ms:.2f} | {figures[kind, 'keepalive'].cpu_ms:.2f}"

    gunicorn_rows = "\n".join(f"| {k} | {rates(k, GUNICORN_MODES)} | {cpu(k)} |" for k in GUNICORN)
    stack_rows = "\n".join(
        f"| {stack} | {variant} | {rates(f'{stack}:{variant}', STACK_MODES)} | "
        f"{cpu(f'{stack}:{variant}')} |"
        for stack in STACKS
        for variant in ("ours", "fixed")
    )
    verdict_rows = "\n".join(f"| {row} |" for row in verdicts(figures))
    return f"""{BEGIN}
## mTLS server: new-connection handshakes and keep-alive requests (`make bench-tls`)

Same certificates from `hello-mtls-ca` (ECDSA P-256) for every server, TLS 1.3 negotiated by
all. {rounds} rounds; each round starts new server processes of every kind compared, warms each
up ({WARM_UP_SECONDS:g} s of the first load, not counted) and gives each one {seconds:g} s slice
per load, the rounds going through every order of the servers compared, from {LOAD_PROCESSES}
load processes on loopback. Handshakes: a new TCP + mTLS connection and one `GET /` each, from
clients with `TCP_NODELAY` (as urllib3, httpx and Go set it) and, for gunicorn, also from
clients without it. Keep-alive: `mtls_context.requests_adapter.session()` (requests) in a loop.
The rates below are totals over the rounds; server CPU time per request is from /proc.

- before: {before}
- after:  {after}

gunicorn, the same Flask app, {WORKERS} workers each ({THREADS} threads for gthread):

| server | handshakes/s | … no TCP_NODELAY | keep-alive req/s | CPU ms/handshake | CPU ms/req |
|---|---|---|---|---|---|
{gunicorn_rows}

`ours` = `hello-mtls-server` (gthread, `mtls_context.gunicorn_hooks`); `stock` = gunicorn
configured like smallstep's py-gunicorn example (sync workers, a new SSLContext built from the
files for every connection, so no keep-alive either); `fixed` = ours with a context built once
(the ceiling).

Event-loop stacks, one process each (the recipes of `examples/`), `ours` given one
`ReloadingServerContext`, `fixed` a context built once from the same files:

| stack | context | handshakes/s | keep-alive req/s | CPU ms/handshake | CPU ms/req |
|---|---|---|---|---|---|
{stack_rows}

Each ratio is the geometric mean of the {rounds} rounds' ratios, with its 95 % confidence
interval (Student's t on the logarithms): on this VM one slice of one server moves by 10-20 %
from the next, so read a ratio together with its interval.

| target | ratio | 95 % interval | |
|---|---|---|---|
{verdict_rows}
{END}
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=1.0, help="per slice (default %(default)s)")
    p.add_argument(
        "--rounds",
        type=int,
        default=24,
        help="rounds per comparison; a multiple of 6 takes 3 servers through every order "
        "equally often (default %(default)s)",
    )
    p.add_argument("--write", type=Path, help="update this section of a RESULTS.md")
    p.add_argument(
        "--only",
        choices=("gunicorn", *STACKS),
        action="append",
        help="measure only these servers (repeatable); prints the ratios, writes nothing",
    )
    p.add_argument("--load", type=Path, metavar="CERT_DIR", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.load:
        load_process(args.load)
        return 0
    if args.only and args.write:
        p.error("--only measures a part: it cannot --write the results")
    if args.rounds < 6:
        p.error("--rounds: at least 6, for an interval")
    with tempfile.TemporaryDirectory(prefix="hello-mtls-bench.") as tmp:
        work = Path(tmp)
        _issue(work)
        before = _machine()
        print(f"bench-tls: {before}", flush=True)
        load = Load(work / "client")
        try:
            figures: Figures = {}
            if not args.only or "gunicorn" in args.only:
                print("gunicorn: ours, stock, fixed", flush=True)
                figures |= measure(GUNICORN, GUNICORN_MODES, work, load, args.seconds, args.rounds)
            for stack in STACKS:
                if args.only and stack not in args.only:
                    continue
                print(f"{stack}: ours, fixed", flush=True)
                kinds = (f"{stack}:ours", f"{stack}:fixed")
                figures |= measure(kinds, STACK_MODES, work, load, args.seconds, args.rounds)
        finally:
            load.close()
        if args.only:
            print("\n".join(f"| {row} |" for row in verdicts(figures)))
            return 0
        text = report(figures, before, _machine(), args.seconds, args.rounds)
    print(text)
    if args.write:
        write_section(args.write, BEGIN, END, text)
        print(f"bench-tls: wrote {args.write}")
    return 0


def write_section(results: Path, begin: str, end: str, text: str) -> None:
    """Put ``text`` (from ``begin`` to ``end``) in place of that section of ``results`` (a
    RESULTS.md), or after its end when it has none yet."""
    old = results.read_text() if results.exists() else "# Benchmark results\n"
    if begin in old:
        pattern = re.escape(begin) + ".*?" + re.escape(end) + "\n"
        new = re.sub(pattern, lambda _: text, old, flags=re.S)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    results.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
