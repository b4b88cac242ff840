"""``hello-mtls-grpc-client``: call ``hello-mtls-grpc-server`` in a loop over mTLS, one JSON line
per call (needs grpcio: the ``grpc`` extra).

The channel is the library's `mtls_context.grpc_credentials.ReloadingChannel`: when the
certificate directory changes, new calls go to a channel with the new certificate and bundle
while calls in flight finish on the old one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

import grpc

from mtls_client.cli import now, serve_metrics
from mtls_context import Side, options
from mtls_context.grpc_credentials import ReloadingChannel

METHOD = "/hello.Hello/Say"
DEFAULT_TARGET = "localhost:8443"


def main(argv: list[str] | None = None) -> int:
    """Run the loop; exit status 1 if any call failed, 2 on a bad certificate directory."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.server_id:
        parser.error("--server-id (HELLO_MTLS_SERVER_ID): gRPC channels check the host name only")
    try:
        channel = ReloadingChannel(args.target, args.cert_dir, check_interval=args.check_interval)
    except (OSError, ValueError) as e:
        print(f"hello-mtls-grpc-client: {args.cert_dir}: {e}", file=sys.stderr)
        return 2
    if args.metrics_port:
        serve_metrics(args.metrics_port)
    say: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _n, _f: stop.set())

    failed = sent = 0
    with channel:
        while not stop.is_set() and (args.count == 0 or sent < args.count):
            line: dict[str, object] = {"time": now(), "target": args.target}
            try:
                line.update(body=say(b"", timeout=args.timeout).decode(), error=None)
            except grpc.RpcError as e:
                line.update(body=None, error=f"{e.code().name}: {e.details()}")
            line["client_serial"] = channel.certificate.serial
            sent += 1
            failed += line["error"] is not None
            print(json.dumps(line), flush=True)
            if args.count == 0 or sent < args.count:
                stop.wait(args.interval)
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hello-mtls-grpc-client", description=__doc__)
    p.add_argument(
        "--target",
        default=os.environ.get("HELLO_MTLS_TARGET", DEFAULT_TARGET),
        help="HOST:PORT of the gRPC server (env HELLO_MTLS_TARGET; default %(default)s)",
    )
    p.add_argument(
        "--interval", type=float, default=1.0, help="seconds between calls (default %(default)s)"
    )
    p.add_argument(
        "--count", type=int, default=0, help="stop after this many calls; 0 runs until SIGTERM"
    )
    p.add_argument(
        "--timeout", type=float, default=5.0, help="per-call deadline in seconds (%(default)s)"
    )
    options.add_common(p, side=Side.CLIENT)
    return p
