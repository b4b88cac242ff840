"""What the CA says about itself (``GET /status``, ``GET /roots``) and whether the certificate it
serves chains to those roots for its Service name. Standard library only.

The CLI reaches the CA through a port-forward that the API server authenticates, so the first
reads need no trust of their own; the chain is then checked on a second connection that trusts
only the roots the CA publishes, with the Service's DNS name checked as a client in the cluster
would.
"""

from __future__ import annotations

import datetime
import http.client
import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CAReport", "read_ca"]

Connect = Callable[[], socket.socket]
"""Opens a new connection to the CA's read-only port (a port-forward, or TCP in tests)."""

_TIMEOUT = 10.0


@dataclass(frozen=True)
class CAReport:
    """The CA's ``GET /status`` and what its served certificate showed."""

    status: dict[str, Any]
    roots_pem: bytes
    served_not_after: datetime.datetime | None
    """When the certificate the CA serves expires; None when its chain did not verify."""
    chain_error: str | None
    """Why the served chain does not verify for the Service name, or None."""


def read_ca(connect: Connect, hostname: str) -> CAReport:
    """Read the CA's status and roots, then check its served chain.

    Args:
        connect: opens a connection to the CA's read-only port.
        hostname: the name a client in the cluster uses, e.g. ``hello-mtls-ca.hello-mtls.svc``.

    Raises:
        OSError: the CA cannot be reached or answers with an error (``ssl.SSLError`` is one).
        ValueError: the status is not the JSON object the CA's API documents.
    """
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    status = json.loads(_get(connect, unverified, hostname, "/status"))
    if not isinstance(status, dict):
        raise ValueError("the CA's GET /status is not a JSON object")
    roots = _get(connect, unverified, hostname, "/roots")
    trusting = ssl.create_default_context(cadata=roots.decode("ascii"))
    try:
        with trusting.wrap_socket(connect(), server_hostname=hostname) as tls:
            served = tls.getpeercert() or {}
    except ssl.SSLCertVerificationError as error:
        return CAReport(status, roots, None, error.verify_message or str(error))
    not_after = datetime.datetime.fromtimestamp(
        ssl.cert_time_to_seconds(str(served["notAfter"])), datetime.UTC
    )
    return CAReport(status, roots, not_after, None)


def _get(connect: Connect, context: ssl.SSLContext, hostname: str, path: str) -> bytes:
    connection = http.client.HTTPSConnection(hostname, timeout=_TIMEOUT, context=context)
    raw = connect()
    raw.settimeout(_TIMEOUT)
    connection.sock = context.wrap_socket(raw, server_hostname=hostname)
    try:
        connection.request("GET", path, headers={"Accept": "*/*"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise OSError(f"the CA answered GET {path} with {response.status}")
    return body
