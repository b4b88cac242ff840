"""``hello-mtls-grpc-client``: call ``hello-mtls-grpc-server`` in a loop over mTLS, one JSON line
per call (needs grpcio: the ``grpc`` extra).

The channel is the library's `mtls_context.grpc_credentials.ReloadingChannel`: when the
certificate directory changes, new calls go to a channel with the new certificate and bundle
while calls in flight finish on the old one.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc

from mtls_client import loop
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
        loop.serve_metrics(args.metrics_port)
    say: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)

    def call() -> dict[str, object]:
        line: dict[str, object] = {"time": loop.now(), "target": args.target}
        try:
            line.update(body=say(b"", timeout=args.timeout).decode(), error=None)
        except grpc.RpcError as e:
            line.update(body=None, error=f"{e.code().name}: {e.details()}")
        line["client_serial"] = channel.certificate.serial
        return line

    with channel:
        return loop.run(call, args)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hello-mtls-grpc-client", description=__doc__)
    p.add_argument(
        "--target",
        default=os.environ.get("HELLO_MTLS_TARGET", DEFAULT_TARGET),
        help="HOST:PORT of the gRPC server (env HELLO_MTLS_TARGET; default %(default)s)",
    )
    loop.add_arguments(p, call="call")
    return p
