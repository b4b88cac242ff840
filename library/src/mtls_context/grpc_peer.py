"""The verified peer of a gRPC call on `mtls_context.grpc_credentials.server_credentials` (needs
grpcio).

::

    def say(request: bytes, context: grpc.ServicerContext) -> bytes:
        return f"Hello, {peer_identity(context)}!".encode()

    handler = grpc.unary_unary_rpc_method_handler(require_peer(say, allow=["web.shop.svc"]))

gRPC hands the peer over as ``auth_context()``, whose names carry no kind (a DNS name and a URI
look alike); the certificate is decoded instead into the dict ``getpeercert()`` returns, so the
identity and the allow-list are the same functions (`mtls_context.identity`) as for Flask,
Starlette and aiohttp.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar, cast

import grpc

from mtls_context.contexts import _pem_path
from mtls_context.identity import PeerCert, allowed, identity

__all__ = ["peer_cert", "peer_identity", "require_peer"]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Behavior = Callable[[_Request, grpc.ServicerContext], _Response]


def peer_cert(context: grpc.ServicerContext) -> PeerCert | None:
    """The verified client certificate of the call, as ``getpeercert()`` gives it, or None."""
    auth = cast(Mapping[str, Sequence[bytes]], context.auth_context())
    pems = auth.get("x509_pem_cert", [])
    return _decode(pems[0]) if pems else None


def peer_identity(context: grpc.ServicerContext) -> str | None:
    """The client's first DNS name, else SPIFFE ID, else common name; None without one."""
    cert = peer_cert(context)
    return identity(cert) if cert else None


def require_peer(
    behavior: _Behavior[_Request, _Response], allow: Collection[str] = ()
) -> _Behavior[_Request, _Response]:
    """Wrap a unary method: ``UNAUTHENTICATED`` without a verified client certificate,
    ``PERMISSION_DENIED`` if ``allow`` (DNS names and SPIFFE IDs) is given and the client is not
    on it, each with the one line the HTTP adapters answer."""

    @functools.wraps(behavior)
    def wrapper(request: _Request, context: grpc.ServicerContext) -> _Response:
        cert = peer_cert(context)
        if cert is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no verified client certificate")
        if not allowed(cert, allow):
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{identity(cert)} is not on this server's allow-list",
            )
        return behavior(request, context)

    return wrapper


@functools.lru_cache(maxsize=256)
def _decode(pem: bytes) -> PeerCert:
    # The ssl module decodes a certificate into getpeercert()'s dict only from a file, with the
    # function its own tests use (there is no public one); a client's certificate is decoded
    # once, then each call of that client finds it here.
    with _pem_path(pem) as path:
        decoded: dict[str, Any] = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    return decoded
