"""`mtls_context.flask_peer` on a Flask app, with the socket gunicorn would put in the environ."""

from typing import Any

from flask import Flask

from mtls_context.flask_peer import peer_identity, require_peer


class PeerSocket:
    def __init__(self, cert: dict[str, Any]) -> None:
        self.cert = cert

    def getpeercert(self) -> dict[str, Any]:
        return self.cert


def app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    @require_peer(allow=["web.shop.svc", "spiffe://cluster.local/ns/shop/sa/web"])
    def index() -> str:
        return f"Hello, {peer_identity()}!"

    return app


def get(dns: str | None = None, uri: str | None = None) -> tuple[int, str]:
    environ: dict[str, Any] = {}
    if dns or uri:
        sans = ((("DNS", dns),) if dns else ()) + ((("URI", uri),) if uri else ())
        environ["gunicorn.socket"] = PeerSocket({"subjectAltName": sans})
    response = app().test_client().get("/", environ_base=environ)
    return response.status_code, response.get_data(as_text=True)


def test_an_allowed_dns_name_or_spiffe_id_gets_through() -> None:
    assert get(dns="web.shop.svc") == (200, "Hello, web.shop.svc!")
    assert get(uri="spiffe://cluster.local/ns/shop/sa/web") == (
        200,
        "Hello, spiffe://cluster.local/ns/shop/sa/web!",
    )


def test_others_get_403_and_no_certificate_401() -> None:
    assert get(dns="intruder.test") == (403, "intruder.test is not on this server's allow-list\n")
    assert get() == (401, "no verified client certificate\n")
