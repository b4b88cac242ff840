"""The verified peer of a Flask request served by gunicorn over mTLS (needs Flask).

::

    from mtls_context.flask_peer import peer_identity, require_peer

    @app.get("/")
    @require_peer(allow=["web.shop.svc", "spiffe://cluster.local/ns/shop/sa/web"])
    def index():
        return f"Hello, {peer_identity()}!"
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from flask import Response, request

from mtls_context.identity import PeerCert, allowed, identity, wsgi_peer_cert

__all__ = ["peer_cert", "peer_identity", "require_peer"]

_View = TypeVar("_View", bound=Callable[..., Any])


def peer_cert() -> PeerCert | None:
    """The verified client certificate of the current request, or None."""
    return wsgi_peer_cert(request.environ)


def peer_identity() -> str | None:
    """The current client's first DNS name, else SPIFFE ID, else common name; None without one."""
    cert = peer_cert()
    return identity(cert) if cert else None


def require_peer(allow: Collection[str] = ()) -> Callable[[_View], _View]:
    """A view decorator: 401 without a verified client certificate, 403 if ``allow`` (DNS names
    and SPIFFE IDs) is given and the client is not on it. Answers are one plain-text line."""

    def decorate(view: _View) -> _View:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            cert = peer_cert()
            if cert is None:
                return _text("no verified client certificate", 401)
            if not allowed(cert, allow):
                return _text(f"{identity(cert)} is not on this server's allow-list", 403)
            return view(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


def _text(line: str, status: int) -> Response:
    return Response(line + "\n", status=status, mimetype="text/plain")
