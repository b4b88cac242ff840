"""The calling loop both example clients share: ``--interval``, ``--count`` and ``--timeout``
(with the library's common client options), one JSON line per call on stdout until ``--count``
calls or SIGTERM/SIGINT, exit status 1 if any call failed."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from mtls_context import Side, options

__all__ = ["add_arguments", "now", "run", "serve_metrics"]


def add_arguments(parser: argparse.ArgumentParser, *, call: str) -> None:
    """Add the loop's options and the library's common client options to ``parser``; ``call``
    names one call in the help (``request``)."""
    parser.add_argument(
        "--interval", type=float, default=1.0, help=f"seconds between {call}s (default %(default)s)"
    )
    parser.add_argument(
        "--count",
        type=int,
        default=0,
        help=f"stop after this many {call}s; 0 runs until SIGTERM (default)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help=f"per-{call} timeout in seconds (default %(default)s)",
    )
    options.add_common(parser, side=Side.CLIENT)


def run(call: Callable[[], Mapping[str, object]], args: argparse.Namespace) -> int:
    """Print ``call()`` as a JSON line every ``args.interval`` seconds until ``args.count`` calls
    (0: until SIGTERM or SIGINT); 1 if any line has an ``error``, else 0."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _n, _f: stop.set())
    failed = sent = 0
    while not stop.is_set() and (args.count == 0 or sent < args.count):
        line = call()
        sent += 1
        failed += line.get("error") is not None
        print(json.dumps(line), flush=True)
        if args.count == 0 or sent < args.count:
            stop.wait(args.interval)
    return 1 if failed else 0


def now() -> str:
    """The time for a JSON line: UTC, milliseconds, ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def serve_metrics(port: int) -> None:
    """Start the ``/metrics`` thread (prometheus-client is imported only when asked for)."""
    from mtls_context import prometheus

    prometheus.serve(port)
