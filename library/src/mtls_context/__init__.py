"""Server and client TLS contexts built from a certificate directory (stdlib ``ssl`` only).

Modules: ``layout`` (the directory as the kubelet writes it), ``tls_policy`` (the TLS policy
document and its profiles), ``groups`` (key exchange groups on Python < 3.15), ``contexts``
(one validated context from one version), ``reloading`` (contexts that follow the directory),
``identity`` (names in a verified peer certificate), ``status`` (what each reloading context
serves or presents, for metrics).

Typical use::

    reloading = ReloadingContext(Path("/var/run/hello-mtls"), Side.CLIENT)
    reloading.current()                     # the context for a new connection

    server_ssl = ReloadingServerContext(Path("/var/run/hello-mtls"))
    await asyncio.start_server(handle, port=8443, ssl=server_ssl)   # reloads per connection
"""

from mtls_context.contexts import (
    ALPN,
    Certificate,
    MTLSContext,
    Side,
    Verify,
    build_context,
    client_context,
    server_context,
)
from mtls_context.identity import PeerCert, identity
from mtls_context.layout import CA, CERT, CRL, FILES, KEY, POLICY, read_version, write_version
from mtls_context.reloading import (
    DEFAULT_CHECK_INTERVAL,
    DEFAULT_MAX_AGE,
    ReloadingContext,
    ReloadingServerContext,
)
from mtls_context.status import Status, statuses
from mtls_context.tls_policy import (
    DEFAULT_POLICY,
    GROUPS,
    INTERMEDIATE_CIPHERS,
    PROFILES,
    TLSPolicy,
)

__all__ = [
    "ALPN",
    "CA",
    "CERT",
    "CRL",
    "DEFAULT_CHECK_INTERVAL",
    "DEFAULT_MAX_AGE",
    "DEFAULT_POLICY",
    "FILES",
    "GROUPS",
    "INTERMEDIATE_CIPHERS",
    "KEY",
    "POLICY",
    "PROFILES",
    "Certificate",
    "MTLSContext",
    "PeerCert",
    "ReloadingContext",
    "ReloadingServerContext",
    "Side",
    "Status",
    "TLSPolicy",
    "Verify",
    "build_context",
    "client_context",
    "identity",
    "read_version",
    "server_context",
    "statuses",
    "write_version",
]
