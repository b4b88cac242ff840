"""Routes. The peer certificate was verified by the TLS handshake before any of this runs."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from mtls_context.flask_peer import peer_cert
from mtls_context.identity import allowed, identity

bp = Blueprint("hello", __name__)


@bp.get("/")
def index() -> Response:
    """Greet the client by the identity in its certificate.

    :raise 401: without a verified client certificate (only outside the mTLS server).
    :raise 403: if an allow-list is set and the client is not on it.
    """
    cert = peer_cert()
    if cert is None:
        return _text("no verified client certificate", 401)
    who = identity(cert)
    if not allowed(cert, current_app.config["ALLOW"]):
        return _text(f"{who} is not on this server's allow-list", 403)
    return _text(f"Hello, {who}!", 200)


@bp.get("/healthz")
def healthz() -> Response:
    """For ``hello-mtls-server --probe``: any verified client, allow-list or not."""
    if peer_cert() is None:
        return _text("no verified client certificate", 401)
    return _text("ok", 200)


def _text(line: str, status: int) -> Response:
    return Response(line + "\n", status=status, mimetype="text/plain")
