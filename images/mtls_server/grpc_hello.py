"""``hello-mtls-grpc-server``: the example gRPC server over mTLS (needs grpcio: the ``grpc``
extra).

``/hello.Hello/Say`` answers ``Hello, <client identity>! (serial <client serial>)`` from the
verified peer (`mtls_context.grpc_peer`: the HTTP server's identity and allow-list); requests and
answers are raw bytes, no generated code. The credentials are the library's
(`mtls_context.grpc_credentials.server_credentials`): client certificates required, a new
certificate, key and bundle handed to gRPC when the directory changes. What the TLS policy can
and cannot enforce under gRPC: docs/tls-library.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Collection
from concurrent import futures

import grpc

from mtls_context import Side, options
from mtls_context.grpc_credentials import server_credentials
from mtls_context.grpc_peer import peer_cert, require_peer
from mtls_context.identity import identity, serial
from mtls_server.cli import serve_metrics

SERVICE, METHOD = "hello.Hello", "Say"


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; exit status 2 on a bad certificate directory."""
    args = _parser().parse_args(argv)
    try:
        credentials = server_credentials(args.cert_dir, check_interval=args.check_interval)
    except (OSError, ValueError) as e:
        print(f"hello-mtls-grpc-server: {args.cert_dir}: {e}", file=sys.stderr)
        return 2
    if args.metrics_port:
        serve_metrics(args.metrics_port)
    server = serve(str(args.bind), credentials, args.allow)
    for signum in (signal.SIGINT, signal.SIGTERM):  # calls in flight get 5 s to finish
        signal.signal(signum, lambda _n, _f: server.stop(5))
    server.wait_for_termination()
    return 0


def serve(bind: str, credentials: grpc.ServerCredentials, allow: Collection[str]) -> grpc.Server:
    """A started server on ``bind`` with the Hello service."""

    def say(request: bytes, context: grpc.ServicerContext) -> bytes:
        cert = peer_cert(context)
        assert cert is not None  # require_peer let the call through
        return f"Hello, {identity(cert)}! (serial {serial(cert)})".encode()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        require_peer(say, allow)
    )
    service = grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler})
    server.add_generic_rpc_handlers([service])
    server.add_secure_port(bind, credentials)
    server.start()
    return server


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hello-mtls-grpc-server", description=__doc__)
    options.add_common(p, side=Side.SERVER)
    return p
