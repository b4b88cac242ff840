from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mtls_server import create_app

SPIFFE = "spiffe://cluster.local/ns/shop/sa/web"


class PeerSocket:
    """What gunicorn puts in ``environ["gunicorn.socket"]``: only ``getpeercert`` is used."""

    def __init__(self, cert: dict[str, Any]) -> None:
        self.cert = cert

    def getpeercert(self) -> dict[str, Any]:
        return self.cert


def cert(
    dns: tuple[str, ...] = (), uris: tuple[str, ...] = (), cn: str | None = None
) -> dict[str, Any]:
    sans = tuple(("DNS", d) for d in dns) + tuple(("URI", u) for u in uris)
    subject = ((("commonName", cn),),) if cn else ()
    return {"subject": subject, "subjectAltName": sans, "serialNumber": "0A"}


@pytest.fixture
def app() -> Flask:
    return create_app({"TESTING": True, "ALLOW": []})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def get(client: FlaskClient, peer: dict[str, Any] | None, path: str = "/") -> tuple[int, str]:
    environ = {"gunicorn.socket": PeerSocket(peer)} if peer is not None else {}
    response = client.get(path, environ_base=environ)
    return response.status_code, response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("peer", "greeting"),
    [
        (cert(dns=("web.shop.svc", "web"), uris=(SPIFFE,), cn="cn"), "Hello, web.shop.svc!\n"),
        (cert(uris=(SPIFFE,), cn="cn"), f"Hello, {SPIFFE}!\n"),
        (cert(cn="legacy"), "Hello, legacy!\n"),
    ],
)
def test_greets_the_first_dns_name_else_spiffe_id_else_cn(
    client: FlaskClient, peer: dict[str, Any], greeting: str
) -> None:
    assert get(client, peer) == (200, greeting)


def test_without_a_verified_certificate_nobody_is_greeted(client: FlaskClient) -> None:
    assert get(client, None) == (401, "no verified client certificate\n")
    assert get(client, {})[0] == 401


@pytest.mark.parametrize("allowed", ["web.shop.svc", "web", SPIFFE])
def test_allow_list_admits_any_name_of_the_client(allowed: str) -> None:
    client = create_app({"ALLOW": [allowed]}).test_client()

    assert get(client, cert(dns=("web.shop.svc", "web"), uris=(SPIFFE,)))[0] == 200


def test_allow_list_refuses_others_with_one_line() -> None:
    client = create_app({"ALLOW": ["web.shop.svc"]}).test_client()

    status, body = get(client, cert(dns=("db.shop.svc",), uris=(SPIFFE,)))

    assert (status, body) == (403, "db.shop.svc is not on this server's allow-list\n")


def test_allow_list_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELLO_MTLS_ALLOW", "a.test,b.test")

    assert create_app().config["ALLOW"] == ["a.test", "b.test"]


def test_healthz_answers_any_verified_client_even_off_the_allow_list() -> None:
    client = create_app({"ALLOW": ["web.shop.svc"]}).test_client()

    assert get(client, cert(dns=("other.test",)), "/healthz") == (200, "ok\n")
    assert get(client, None, "/healthz")[0] == 401
