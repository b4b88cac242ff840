"""``hello-mtls-client``: call an mTLS URL in a loop, one JSON line per request."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime

import requests

from mtls_context import DEFAULT_CHECK_INTERVAL
from mtls_context.requests_adapter import ReloadingAdapter, session, tls_info

DEFAULT_URL = "https://localhost:8443/"
DEFAULT_CERT_DIR = "/var/run/hello-mtls"


def main(argv: list[str] | None = None) -> int:
    """Run the loop; exit status 1 if any request failed, 2 on bad arguments or certificates."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        s = session(args.cert_dir, check_interval=args.check_interval)
    except (OSError, ValueError) as e:
        print(f"hello-mtls-client: {args.cert_dir}: {e}", file=sys.stderr)
        return 2
    adapter = s.get_adapter("https://")
    assert isinstance(adapter, ReloadingAdapter)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _n, _f: stop.set())

    failed = sent = 0
    with s:
        while not stop.is_set() and (args.count == 0 or sent < args.count):
            line = _call(s, adapter, args.url, args.timeout)
            sent += 1
            failed += line.get("error") is not None
            print(json.dumps(line), flush=True)
            if args.count == 0 or sent < args.count:
                stop.wait(args.interval)
    return 1 if failed else 0


def _call(
    s: requests.Session, adapter: ReloadingAdapter, url: str, timeout: float
) -> dict[str, object]:
    line: dict[str, object] = {"time": _now(), "url": url}
    try:
        response = s.get(url, timeout=timeout)
    except (requests.RequestException, ValueError) as e:
        line.update(
            status=None,
            error=_reason(e),
            server_serial=None,
            client_serial=adapter.certificate.serial,
        )
        return line
    info = tls_info(response)
    line.update(
        status=response.status_code,
        body=response.text.strip(),
        error=None if response.ok else f"HTTP {response.status_code}",
        server_serial=info.server_serial if info else None,
        client_serial=info.client_serial if info else adapter.certificate.serial,
    )
    return line


def _reason(error: BaseException) -> str:
    """The innermost cause, which names the TLS or socket problem."""
    while True:
        inner = (
            error.__cause__
            or error.__context__
            or next((a for a in getattr(error, "args", ()) if isinstance(a, BaseException)), None)
        )
        if inner is None:
            return f"{type(error).__name__}: {error}"
        error = inner


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="hello-mtls-client", description=__doc__)
    p.add_argument(
        "--url",
        default=env("HELLO_MTLS_URL", DEFAULT_URL),
        help="URL to call (env HELLO_MTLS_URL; default %(default)s)",
    )
    p.add_argument(
        "--cert-dir",
        default=env("HELLO_MTLS_CERT_DIR", DEFAULT_CERT_DIR),
        help="certificate directory (env HELLO_MTLS_CERT_DIR; default %(default)s)",
    )
    p.add_argument(
        "--interval", type=float, default=1.0, help="seconds between requests (default %(default)s)"
    )
    p.add_argument(
        "--count",
        type=int,
        default=0,
        help="stop after this many requests; 0 runs until SIGTERM (default)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="per-request timeout in seconds (default %(default)s)",
    )
    p.add_argument(
        "--check-interval",
        type=float,
        default=DEFAULT_CHECK_INTERVAL,
        help="check the certificate directory at most this often (default %(default)s)",
    )
    return p
