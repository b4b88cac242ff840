"""``GET /`` over one new TLS connection, with what its handshake said."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    response: str
    serial: str
    session: ssl.SSLSession | None
    resumed: bool


def get(
    port: int,
    context: ssl.SSLContext,
    session: ssl.SSLSession | None = None,
    path: str = "/",
) -> Reply:
    """``GET path`` on a new connection: the response and what the handshake said."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with context.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            peer = tls.getpeercert() or {}
            tls.sendall(
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
            )
            response = b""
            while chunk := tls.recv(4096):
                response += chunk
            if not response:  # TLS 1.3: a refused client learns it only here
                raise ConnectionError("the server closed the connection without a response")
            return Reply(
                response.decode(errors="replace"),
                format(int(str(peer.get("serialNumber", "0")), 16), "x"),
                tls.session,
                bool(tls.session_reused),
            )
