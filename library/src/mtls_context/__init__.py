"""Server and client TLS contexts built from a certificate directory (stdlib ``ssl`` only).

The public API is what an app needs: the reloading contexts, the builders of one context, the
verified peer's identity and what each reloading context serves (``__all__``; a test pins it).

Typical use::

    reloading = ReloadingContext(Path("/var/run/hello-mtls"), Side.CLIENT)
    reloading.current()                     # the context for a new connection

    server_ssl = ReloadingServerContext(Path("/var/run/hello-mtls"))
    await asyncio.start_server(handle, port=8443, ssl=server_ssl)   # reloads per connection

Modules: ``layout`` (the directory as the kubelet writes it: file names, ``read_version``),
``tls_policy`` (the TLS policy document and its profiles), ``groups`` (key exchange groups on
Python < 3.15), ``contexts`` (one validated context from one version), ``reloading`` (contexts
that follow the directory), ``identity`` (names in a verified peer certificate), ``status`` (what
each reloading context serves or presents, for metrics). Each stack has its adapter module, which
imports that stack only when you import it: ``requests_adapter``, ``httpx_transport``,
``aiohttp_client``, ``grpc_credentials`` (clients and gRPC servers), ``gunicorn_hooks``, and the
peer helpers ``flask_peer``, ``starlette_peer``, ``aiohttp_peer``, ``grpc_peer``.
"""

from mtls_context.contexts import (
    Certificate,
    MTLSContext,
    Side,
    build_context,
    client_context,
    server_context,
)
from mtls_context.identity import PeerCert, allowed, identity
from mtls_context.reloading import ReloadingContext, ReloadingServerContext
from mtls_context.status import Status, statuses

__all__ = [
    "Certificate",
    "MTLSContext",
    "PeerCert",
    "ReloadingContext",
    "ReloadingServerContext",
    "Side",
    "Status",
    "allowed",
    "build_context",
    "client_context",
    "identity",
    "server_context",
    "statuses",
]
