"""``hello-mtls-grpc-server``: the example gRPC server over mTLS (needs grpcio: the ``grpc``
extra).

``/hello.Hello/Say`` answers ``Hello, <client identity>! (serial <client serial>)`` from the
verified peer in ``auth_context()``; requests and answers are raw bytes, no generated code. The
credentials are the library's (`mtls_context.grpc_credentials.server_credentials`): client
certificates required, a new certificate, key and bundle handed to gRPC when the directory
changes. What the TLS policy can and cannot enforce under gRPC: docs/tls-library.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import ssl
import sys
from collections.abc import Collection, Mapping, Sequence
from concurrent import futures
from pathlib import Path

import grpc

from mtls_context import DEFAULT_CHECK_INTERVAL
from mtls_context.grpc_credentials import server_credentials
from mtls_server.cli import add_metrics_port, serve_metrics

SERVICE, METHOD = "hello.Hello", "Say"
DEFAULT_BIND = "0.0.0.0:8443"
DEFAULT_CERT_DIR = "/var/run/hello-mtls"


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
    server = serve(args.bind, credentials, args.allow or [])
    for signum in (signal.SIGINT, signal.SIGTERM):  # calls in flight get 5 s to finish
        signal.signal(signum, lambda _n, _f: server.stop(5))
    server.wait_for_termination()
    return 0


def serve(bind: str, credentials: grpc.ServerCredentials, allow: Collection[str]) -> grpc.Server:
    """A started server on ``bind`` with the Hello service."""

    def say(request: bytes, context: grpc.ServicerContext) -> bytes:
        auth: Mapping[str, Sequence[bytes]] = context.auth_context()  # type: ignore[assignment]
        names = [value.decode() for value in auth.get("x509_subject_alternative_name", [])]
        if allow and set(allow).isdisjoint(names):
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{identity(auth)} is not on this server's allow-list",
            )
        return f"Hello, {identity(auth)}! (serial {peer_serial(auth)})".encode()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(say)
    service = grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler})
    server.add_generic_rpc_handlers([service])
    server.add_secure_port(bind, credentials)
    server.start()
    return server


def identity(auth: Mapping[str, Sequence[bytes]]) -> str:
    """As `mtls_context.identity.identity`: the first DNS name, else the SPIFFE ID, else the CN."""
    names = [value.decode() for value in auth.get("x509_subject_alternative_name", [])]
    dns = [name for name in names if "://" not in name]
    spiffe = [name for name in names if name.startswith("spiffe://")]
    common = [value.decode() for value in auth.get("x509_common_name", [])]
    return (dns or spiffe or common or ["?"])[0]


def peer_serial(auth: Mapping[str, Sequence[bytes]]) -> str:
    """The peer certificate's serial as lowercase hex (the form the CA prints)."""
    (pem,) = auth["x509_pem_cert"]
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    # Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version, serialNumber INTEGER, ...
    _, _, at = _header(der, 0)
    _, _, at = _header(der, at)
    tag, length, at = _header(der, at)
    if tag == 0xA0:  # the explicit version
        tag, length, at = _header(der, at + length)
    return format(int.from_bytes(der[at : at + length], "big"), "x")


def _header(der: bytes, at: int) -> tuple[int, int, int]:
    """A DER element's tag, length and where its content starts."""
    tag, length, at = der[at], der[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        length, at = int.from_bytes(der[at : at + size], "big"), at + size
    return tag, length, at


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="hello-mtls-grpc-server", description=__doc__)
    p.add_argument(
        "--bind",
        default=env("HELLO_MTLS_BIND", DEFAULT_BIND),
        help="HOST:PORT (env HELLO_MTLS_BIND; default %(default)s)",
    )
    p.add_argument(
        "--cert-dir",
        type=Path,
        default=env("HELLO_MTLS_CERT_DIR", DEFAULT_CERT_DIR),
        help="certificate directory (env HELLO_MTLS_CERT_DIR; default %(default)s)",
    )
    p.add_argument(
        "--allow",
        action="append",
        default=None,
        help="DNS name or SPIFFE ID allowed to get a hello; repeatable (default: every verified "
        "client)",
    )
    p.add_argument(
        "--check-interval",
        type=float,
        default=DEFAULT_CHECK_INTERVAL,
        help="check the certificate directory at most this often (default %(default)s)",
    )
    add_metrics_port(p)
    return p
