"""``make bench-tls``: new-connection mTLS handshakes/s and keep-alive requests/s, side by side.

Three servers run the same Flask app on the same certificates (issued by ``hello-mtls-ca``),
one at a time, in interleaved rounds so that machine load drifts hit all of them alike:

  ours    ``hello-mtls-server``: gunicorn gthread, cached context that reloads on change
  stock   gunicorn configured like smallstep's hello-mtls py-gunicorn example: certfile,
          keyfile, ca_certs, cert_reqs, ssl_version and ciphers in the config, default sync
          workers; gunicorn then builds a new SSLContext from the files for every connection
  fixed   ours with a context built once and never reloaded (the ceiling)

Then each event-loop stack (asyncio, uvicorn, aiohttp, hypercorn; ``tests/support/
stack_servers.py``) three times: ``ours`` given one ``ReloadingServerContext``, ``fixed`` given a
context built once from the same files, and ``fixed2``, a second identical ``fixed`` process:
fixed/fixed2 is the ratio of two identical servers, how far ours/fixed can stray by chance.

Load runs on loopback only, in separate processes, bounded by time and count.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
WORKERS = 2
THREADS = 4
LOAD_PROCESSES = 2
MAX_REQUESTS_PER_LOAD = 200_000
BEGIN, END = "<!-- bench-tls:begin -->", "<!-- bench-tls:end -->"
MODES = ("handshake", "handshake-nagle", "keepalive")
STACKS = ("asyncio", "uvicorn", "aiohttp", "hypercorn")
TESTS = HERE.parent / "tests"

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
    if ":" in kind:  # an event-loop stack: ours, fixed or fixed2
        stack, variant = kind.split(":")
        argv = [sys.executable, "-m", "support.stack_servers", stack, str(port), str(cert_dir)]
        return [*argv, "1.0", *(["fixed"] if variant.startswith("fixed") else [])], {
            "PYTHONPATH": str(TESTS)
        }
    if kind == "ours":
        return [str(BIN / "gunicorn"), "-c", "python:mtls_server.gunicorn_conf", app], env
    if kind == "fixed":
        return [str(BIN / "gunicorn"), "-c", str(HERE / "fixed_context_conf.py"), app], env
    conf = work / "stock.conf.py"
    conf.write_text(STOCK_CONF.format(port=port, workers=WORKERS, dir=cert_dir))
    return [str(BIN / "gunicorn"), "-c", str(conf), app], env


@contextlib.contextmanager
def serving(kind: str, work: Path) -> Iterator[tuple[int, int]]:
    """Start one server; yield its port and master pid once it answers over TLS 1.3."""
    port = _free_port()
    argv, env = server_argv(kind, port, work)
    with open(work / f"{kind}.log", "ab") as log:
        server = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    try:
        version = _wait_until_serving(port, work, server)
        if version != "TLSv1.3":
            raise SystemExit(f"{kind} negotiated {version}, expected TLSv1.3 for all servers")
        yield port, server.pid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)


def slice_(mode: str, server: tuple[int, int], work: Path, seconds: float) -> list[float]:
    """Run the load processes together for ``seconds``.

    Returns [requests, seconds, server CPU seconds (master and workers)].
    """
    port, pid = server
    start_at = time.time() + 1.0  # after every load process has imported what it needs
    argv = [
        sys.executable,
        __file__,
        "--load",
        mode,
        "--port",
        str(port),
        "--cert-dir",
        str(work / "client"),
        "--seconds",
        str(seconds),
        "--start-at",
        str(start_at),
    ]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(LOAD_PROCESSES)
    ]
    cpu_before = _cpu_seconds(pid)
    results = [p.communicate(timeout=seconds + 60)[0].split() for p in procs]
    cpu = _cpu_seconds(pid) - cpu_before
    failed = sum(int(r[1]) for r in results)
    if failed:
        raise SystemExit(f"{failed} {mode} requests failed on port {port}")
    return [sum(int(r[0]) for r in results), max(float(r[2]) for r in results), cpu]


def _cpu_seconds(master: int) -> float:
    """User + system CPU time of a gunicorn master and its workers, from /proc (Linux)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == master or int(fields[1]) == master:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def load(mode: str, port: int, cert_dir: Path, seconds: float, start_at: float) -> None:
    """One load process: print ``<successful requests> <failed requests> <elapsed seconds>``."""
    from mtls_context import client_context
    from mtls_context.requests_adapter import session

    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    context = client_context(cert_dir)
    s = session(cert_dir)
    url = f"https://localhost:{port}/"
    done = failed = 0
    time.sleep(max(0.0, start_at - time.time()))
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline and done < MAX_REQUESTS_PER_LOAD:
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
    print(done, failed, time.monotonic() - start)


def _wait_until_serving(port: int, work: Path, server: subprocess.Popen[bytes]) -> str:
    from mtls_context import client_context

    context = client_context(work / "client")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited: see {work}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if tls.recv(4096).startswith(b"HTTP/1.1 200 "):
                        return str(tls.version())
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not come up in 30 s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def report(
    rates: dict[str, dict[str, float]], before: str, after: str, seconds: float, rounds: int
) -> str:
    hs = {k: rates[k]["handshake"] for k in rates}
    ka = {k: rates[k]["keepalive"] for k in rates}
    nagle = {k: rates[k]["handshake-nagle"] for k in ("ours", "stock", "fixed")}
    checks = [
        ("handshakes/s: ours ≥ 1.1 × stock (TCP_NODELAY clients)", hs["ours"] / hs["stock"], 1.1),
        (
            "handshakes/s: ours ≥ 1.1 × stock (clients without it)",
            nagle["ours"] / nagle["stock"],
            1.1,
        ),
        ("handshakes/s: ours ≥ 0.95 × fixed", hs["ours"] / hs["fixed"], 0.95),
        ("keep-alive req/s: ours ≥ 3 × stock", ka["ours"] / ka["stock"], 3.0),
    ]
    for stack in STACKS:
        ours, fixed = f"{stack}:ours", f"{stack}:fixed"
        checks += [
            (f"{stack} handshakes/s: ours ≥ 0.95 × fixed", hs[ours] / hs[fixed], 0.95),
            (f"{stack} keep-alive req/s: ours ≥ 0.95 × fixed", ka[ours] / ka[fixed], 0.95),
        ]
    rows = "\n".join(
        f"| {k} | {hs[k]:.0f} | {nagle[k]:.0f} | {ka[k]:.0f} | "
        f"{rates[k]['handshake_cpu_ms']:.2f} | {rates[k]['keepalive_cpu_ms']:.2f} |"
        for k in ("ours", "stock", "fixed")
    )
    stack_rows = "\n".join(
        f"| {k.replace(':', ' | ')} | {hs[k]:.0f} | {ka[k]:.0f} | "
        f"{rates[k]['handshake_cpu_ms']:.2f} | {rates[k]['keepalive_cpu_ms']:.2f} |"
        for stack in STACKS
        for k in (f"{stack}:ours", f"{stack}:fixed", f"{stack}:fixed2")
    )
    noise_rows = "\n".join(
        f"| {stack} | {hs[f'{stack}:fixed'] / hs[f'{stack}:fixed2']:.2f} | "
        f"{ka[f'{stack}:fixed'] / ka[f'{stack}:fixed2']:.2f} |"
        for stack in STACKS
    )
    verdicts = "\n".join(
        f"| {name} | {ratio:.2f} | {'met' if ratio >= target else 'NOT met'} |"
        for name, ratio, target in checks
    )
    return f"""{BEGIN}
## mTLS server: new-connection handshakes and keep-alive requests (`make bench-tls`)

Same certificates from `hello-mtls-ca` (ECDSA P-256) for every server, TLS 1.3 negotiated by
all. {LOAD_PROCESSES} load processes on loopback hit one server at a time in {seconds:g} s
slices, {rounds} slices per figure, in rotating order, so load changes on this shared machine
hit the servers compared alike. Handshakes: a new TCP + mTLS connection and one `GET /` each,
from clients with `TCP_NODELAY` (as urllib3, httpx and Go set it) and, for gunicorn, also from
clients without it. Keep-alive: `mtls_context.requests_adapter.session()` (requests) in a loop.
Server CPU time per request (from /proc) is less sensitive to the machine's load than the
rates are.

- before: {before}
- after:  {after}

gunicorn, the same Flask app, {WORKERS} workers each ({THREADS} threads for gthread):

| server | handshakes/s | … no TCP_NODELAY | keep-alive req/s | CPU ms/handshake | CPU ms/req |
|---|---|---|---|---|---|
{rows}

`ours` = `hello-mtls-server` (gthread, `mtls_context.gunicorn_hooks`); `stock` = gunicorn
configured like smallstep's py-gunicorn example (sync workers, a new SSLContext built from the
files for every connection, so no keep-alive either); `fixed` = ours with a context built once
(the ceiling).

Event-loop stacks, one process each (`tests/support/stack_servers.py`), `ours` given one
`ReloadingServerContext`, `fixed` and `fixed2` (two identical processes) a context built once
from the same files:

| stack | context | handshakes/s | keep-alive req/s | CPU ms/handshake | CPU ms/req |
|---|---|---|---|---|---|
{stack_rows}

| target | ratio | |
|---|---|---|
{verdicts}

Noise floor: the same ratio between the two identical processes `fixed` and `fixed2` of each
stack, measured alongside. An ours/fixed ratio no further from 1 than this says nothing about
the context:

| stack | handshakes/s fixed/fixed2 | keep-alive req/s fixed/fixed2 |
|---|---|---|
{noise_rows}

The machine is shared with other engineers' builds and tests: read the ratios, not the absolute
numbers.
{END}
"""


def measure(
    kinds: tuple[str, ...], modes: tuple[str, ...], work: Path, seconds: float, rounds: int
) -> dict[str, dict[str, float]]:
    """Rates and server CPU per request of ``kinds`` under ``modes``, in rotating order."""
    totals = {(k, m): [0.0, 0.0, 0.0] for k in kinds for m in modes}
    with contextlib.ExitStack() as stack:
        ports = {kind: stack.enter_context(serving(kind, work)) for kind in kinds}
        for round_ in range(1, rounds + 1):
            shift = round_ % len(kinds)
            order = kinds[shift:] + kinds[:shift]  # rotate who goes first
            for mode in modes:
                for kind in order:
                    measured = slice_(mode, ports[kind], work, seconds)
                    totals[kind, mode] = [
                        a + b for a, b in zip(totals[kind, mode], measured, strict=True)
                    ]
            print(
                f"  round {round_}/{rounds}: "
                + ", ".join(
                    f"{k} {m} {totals[k, m][0] / totals[k, m][1]:.0f}/s"
                    for k in kinds
                    for m in modes
                ),
                flush=True,
            )
    return {
        k: {
            **{m: totals[k, m][0] / totals[k, m][1] for m in modes},
            **{f"{m}_cpu_ms": 1000 * totals[k, m][2] / totals[k, m][0] for m in modes},
        }
        for k in kinds
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=2.0, help="per slice (default %(default)s)")
    p.add_argument("--rounds", type=int, default=8, help="slices per figure (default %(default)s)")
    p.add_argument("--write", type=Path, help="update this section of a RESULTS.md")
    p.add_argument("--load", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--cert-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.load:
        load(args.load, args.port, args.cert_dir, args.seconds, args.start_at)
        return 0
    with tempfile.TemporaryDirectory(prefix="hello-mtls-bench.") as tmp:
        work = Path(tmp)
        _issue(work)
        before = _machine()
        print(f"bench-tls: {before}", flush=True)
        rates = measure(("ours", "stock", "fixed"), MODES, work, args.seconds, args.rounds)
        for stack in STACKS:
            kinds = (f"{stack}:ours", f"{stack}:fixed", f"{stack}:fixed2")
            rates |= measure(kinds, ("handshake", "keepalive"), work, args.seconds, args.rounds)
        text = report(rates, before, _machine(), args.seconds, args.rounds)
    print(text)
    if args.write:
        old = args.write.read_text() if args.write.exists() else "# Benchmark results\n"
        if BEGIN in old:
            new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n", text, old, flags=re.S)
        else:
            new = old.rstrip("\n") + "\n\n" + text
        args.write.write_text(new)
        print(f"bench-tls: wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
