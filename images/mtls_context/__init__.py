"""Server and client TLS contexts built from a certificate directory (stdlib ``ssl`` only).

Typical use::

    reloading = ReloadingContext(Path("/var/run/hello-mtls"), Side.SERVER)
    sock = reloading.current().wrap_socket(raw, server_side=True)   # per new connection
"""

from mtls_context.contexts import (
    Certificate,
    MTLSContext,
    Side,
    build_context,
    client_context,
    server_context,
)
from mtls_context.identity import PeerCert, identity
from mtls_context.layout import CA, CERT, FILES, KEY, POLICY, read_version, write_version
from mtls_context.policy import DEFAULT_POLICY, INTERMEDIATE_CIPHERS, TLSPolicy
from mtls_context.reloading import DEFAULT_CHECK_INTERVAL, ReloadingContext

__all__ = [
    "CA",
    "CERT",
    "DEFAULT_CHECK_INTERVAL",
    "DEFAULT_POLICY",
    "FILES",
    "INTERMEDIATE_CIPHERS",
    "KEY",
    "POLICY",
    "Certificate",
    "MTLSContext",
    "PeerCert",
    "ReloadingContext",
    "Side",
    "TLSPolicy",
    "build_context",
    "client_context",
    "identity",
    "read_version",
    "server_context",
    "write_version",
]
