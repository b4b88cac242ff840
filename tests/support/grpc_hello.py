"""``python -m support.grpc_hello PORT CERT_DIR CHECK_INTERVAL``: a gRPC server over mTLS.

``/hello.Hello/Say`` answers ``hello <client identity> <client serial>`` from the verified
peer in ``auth_context()``; raw bytes, no generated code.
"""

from __future__ import annotations

import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from mtls_context.grpc_credentials import server_credentials

METHOD = "/hello.Hello/Say"


def say(request: bytes, context: grpc.ServicerContext) -> bytes:
    auth: Any = context.auth_context()  # values are lists of bytes; the stubs say bytes
    name = auth["x509_subject_alternative_name"][0].decode()
    cert = x509.load_pem_x509_certificate(auth["x509_pem_cert"][0])
    return f"hello {name} {cert.serial_number:x}".encode()


def main(port: int, cert_dir: Path, check_interval: float) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(say)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("hello.Hello", {"Say": handler})]
    )
    server.add_secure_port(
        f"127.0.0.1:{port}", server_credentials(cert_dir, check_interval=check_interval)
    )
    server.start()
    threading.Event().wait()


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))
