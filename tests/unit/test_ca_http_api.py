"""The Flask app of the CA service with Flask's test client; the TLS peer is a stand-in for
``environ["gunicorn.socket"]`` (the real socket is exercised in tests/integration)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient

from mtls_ca import audit
from mtls_ca.audit import AuditLog
from mtls_ca.authority import CA
from mtls_ca.http_api import MAX_REQUEST_BYTES, create_app
from mtls_ca.state import DirectoryStore, State
from mtls_ca.state_cache import StateCache
from mtls_contract.name_rules import parse_allowed_ips
from support.ca_peers import ADMIN, PROVISIONER, Peer
from support.csrs import csr_pem

WORKLOAD = {
    "subject": ((("commonName", "web.demo"),),),
    "subjectAltName": (("DNS", "web.demo"), ("URI", "spiffe://cluster.local/ns/demo/sa/web")),
}
OTHER_DOMAIN = {
    "subject": ((("commonName", "operator"),),),
    "subjectAltName": (("URI", "spiffe://evil.example/hello-mtls/provisioner/operator"),),
}


@pytest.fixture()
def app(tmp_path: Path) -> Flask:
    store = DirectoryStore(tmp_path)
    store.create(State(generations=(CA.create(),)))
    changes: list[str] = []
    app = create_app(StateCache(store), after_change=lambda: changes.append("changed"))
    app.config["changes"] = changes
    return app


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _get(client: FlaskClient, path: str) -> Any:
    return client.get(path).get_json()


def _post(client: FlaskClient, path: str, peer: dict[str, Any] | None, **kwargs: Any) -> Any:
    return client.post(path, environ_base={"gunicorn.socket": Peer(peer)}, **kwargs)


def test_sign_for_a_provisioner(client: FlaskClient) -> None:
    body = {"csr": csr_pem(), "names": ["web.demo"], "namespace": "demo", "duration": "1h"}
    answer = _post(client, "/sign", PROVISIONER, json=body)
    assert answer.status_code == 200
    assert set(answer.json) == {
        "certificate",
        "ca",
        "tls_policy",
        "serial",
        "not_after",
        "bundle_sha256",
        "intermediate_sha256",
        "crl",
    }


@pytest.mark.parametrize(
    ("peer", "status", "error"),
    [
        (None, 401, "a client certificate is required"),
        (WORKLOAD, 403, "client 'web.demo' is not a provisioner of this CA"),
        (
            OTHER_DOMAIN,
            403,
            "client 'spiffe://evil.example/hello-mtls/provisioner/operator' is not a provisioner"
            " of this CA",
        ),
        ({"subject": ()}, 403, "client '(no name)' is not a provisioner of this CA"),
    ],
)
def test_sign_refuses_callers(
    client: FlaskClient, peer: dict[str, Any] | None, status: int, error: str
) -> None:
    answer = _post(client, "/sign", peer, json={"csr": csr_pem(), "names": ["web.demo"]})
    assert (answer.status_code, answer.json) == (status, {"error": error})


def test_no_gunicorn_socket_is_unauthenticated(client: FlaskClient) -> None:
    answer = client.post("/sign", json={})
    assert (answer.status_code, answer.json) == (401, {"error": "a client certificate is required"})


def test_sign_refuses_bad_bodies(client: FlaskClient) -> None:
    assert _post(client, "/sign", PROVISIONER, data=b"\xff\xfe").json == {
        "error": "request body must be JSON"
    }
    policy = _post(
        client, "/sign", PROVISIONER, json={"csr": csr_pem(), "names": ["a.b"], "namespace": "demo"}
    )
    assert (policy.status_code, policy.json) == (
        403,
        {"error": "name 'a.b' is not under namespace 'demo'"},
    )
    huge = _post(client, "/sign", PROVISIONER, data=b"x" * (MAX_REQUEST_BYTES + 1))
    assert (huge.status_code, huge.json) == (
        413,
        {"error": f"request body is larger than {MAX_REQUEST_BYTES} bytes"},
    )


# 65,000 "[" fit in the size limit; json.loads raised RecursionError on them, and ValueError on an
# integer longer than sys.get_int_max_str_digits() (4300 by default): both were a 500.
HOSTILE_JSON = [
    pytest.param(b"[" * 65_000, 400, "request body is nested too deeply", id="deep"),
    pytest.param(
        b'{"from": ' + b"9" * 5000 + b"}",
        400,
        "request body holds a number with too many digits",
        id="long-integer",
    ),
    pytest.param(
        b"[" * 100_000, 413, f"request body is larger than {MAX_REQUEST_BYTES} bytes", id="huge"
    ),
]


@pytest.mark.parametrize("path", ["/sign", "/rotate-root"])
@pytest.mark.parametrize(("body", "status", "error"), HOSTILE_JSON)
def test_hostile_json_is_a_client_error(
    client: FlaskClient, path: str, body: bytes, status: int, error: str
) -> None:
    answer = _post(client, path, ADMIN, data=body, content_type="application/json")
    assert (answer.status_code, answer.json) == (status, {"error": error})


def test_read_only_endpoints(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    roots = client.get("/roots")
    assert roots.mimetype == "application/x-pem-file" and roots.data.startswith(
        b"-----BEGIN CERTIFICATE"
    )
    assert _get(client, "/tls-policy")["min_version"] == "TLSv1.2"
    assert _get(client, "/status")["phase"] == "idle"
    assert client.get("/nowhere").status_code == 404
    assert set(_get(client, "/nowhere")) == {"error"}
    assert client.get("/sign").status_code == 405


def test_metrics_count_issued_and_rejected(client: FlaskClient) -> None:
    def value(name: str) -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise AssertionError(name)

    issued = value("hello_mtls_ca_issued_total")
    refused = value('hello_mtls_ca_rejected_total{reason="unauthenticated"}')
    body = {"csr": csr_pem(), "names": ["web.demo"], "namespace": "demo"}
    assert _post(client, "/sign", PROVISIONER, json=body).status_code == 200
    _post(client, "/sign", None, json={})
    assert value("hello_mtls_ca_issued_total") == issued + 1
    assert value('hello_mtls_ca_rejected_total{reason="unauthenticated"}') == refused + 1
    assert "hello_mtls_ca_cert_expiry_seconds{" in client.get("/metrics").text


def test_rotate_root(app: Flask, client: FlaskClient) -> None:
    assert _post(client, "/rotate-root", None, json={"from": "idle"}).status_code == 401
    assert _post(client, "/rotate-root", WORKLOAD, json={"from": "idle"}).status_code == 403
    bad = _post(client, "/rotate-root", PROVISIONER, json={"from": "done"})
    assert (bad.status_code, bad.json) == (
        400,
        {"error": "'from' must be one of idle, both-trusted, new-signing"},
    )
    assert app.config["changes"] == []
    # Issue 13: the operator's credential could start a rotation; only an admin's may.
    start = _post(client, "/rotate-root", PROVISIONER, json={"from": "idle"})
    assert (start.status_code, start.json) == (
        403,
        {
            "error": "client 'spiffe://cluster.local/hello-mtls/provisioner/operator' may not "
            "start a root rotation (admins may)"
        },
    )
    assert _post(client, "/rotate-root", OTHER_DOMAIN, json={"from": "idle"}).status_code == 403
    assert app.config["changes"] == []
    moved = _post(client, "/rotate-root", ADMIN, json={"from": "idle"})
    assert moved.status_code == 200 and moved.json["phase"] == "both-trusted"
    assert app.config["changes"] == ["changed"]
    stale = _post(client, "/rotate-root", ADMIN, json={"from": "idle"})
    assert (stale.status_code, stale.json) == (
        409,
        {"error": "root rotation is in phase 'both-trusted', not 'idle'"},
    )
    # The operator moves on a rotation an admin started (it knows when every Secret is ready).
    on = _post(client, "/rotate-root", PROVISIONER, json={"from": "both-trusted"})
    assert on.status_code == 200 and on.json["phase"] == "new-signing"
    assert _get(client, "/status")["phase"] == "new-signing"


def test_cluster_domain_reaches_the_name_rule(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.create(State(generations=(CA.create(),)))
    corp = create_app(StateCache(store), cluster_domain="corp.internal").test_client()
    body = {"csr": csr_pem(), "names": ["web.demo.svc.corp.internal"], "namespace": "demo"}
    assert _post(corp, "/sign", PROVISIONER, json=body).status_code == 200
    default = create_app(StateCache(store)).test_client()
    assert _post(default, "/sign", PROVISIONER, json=body).status_code == 403


def test_unexpected_errors_are_json_500(app: Flask, client: FlaskClient) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret detail")

    answer = client.get("/boom")
    assert (answer.status_code, answer.get_json()) == (
        500,
        {"error": "internal error: RuntimeError"},
    )


def test_a_signature_that_fails_unexpectedly_is_a_json_500_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # POST /sign is served before Flask's request cycle (`_SignFirst`): it answers alike.
    store = DirectoryStore(tmp_path)
    store.create(State(generations=(CA.create(),)))
    cache = StateCache(store)
    client = create_app(cache).test_client()

    def broken() -> State:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(cache, "state", broken)
    body = {"csr": csr_pem(), "names": ["web.demo"], "namespace": "demo"}
    answer = _post(client, "/sign", PROVISIONER, json=body)
    assert (answer.status_code, answer.get_json()) == (
        500,
        {"error": "internal error: RuntimeError"},
    )
    assert answer.headers["Content-Type"] == "application/json"
    assert "POST /sign failed" in caplog.text and "secret detail" in caplog.text


def test_the_signing_answer_is_the_same_json_as_flask_would_write(client: FlaskClient) -> None:
    body = {"csr": csr_pem(), "names": ["web.demo"], "namespace": "demo"}
    answer = _post(client, "/sign", PROVISIONER, json=body)
    with client.application.app_context():
        assert answer.data == jsonify(answer.get_json()).get_data()


def test_rotation_is_answered_even_if_the_follow_up_fails(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.create(State(generations=(CA.create(),)))

    def fail() -> None:
        raise OSError("API server unreachable")

    client = create_app(StateCache(store), after_change=fail).test_client()
    answer = _post(client, "/rotate-root", ADMIN, json={"from": "idle"})
    assert answer.status_code == 200 and store.load().phase == "both-trusted"


def test_sign_needs_a_namespace_unless_the_caller_is_an_admin(client: FlaskClient) -> None:
    # Issue 13: without a namespace the operator's credential got any name it asked for.
    body = {"csr": csr_pem(), "names": ["api.example.com"]}
    refused = _post(client, "/sign", PROVISIONER, json=body)
    assert (refused.status_code, refused.json) == (
        400,
        {"error": "'namespace' is required with a provisioner credential"},
    )
    assert _post(client, "/sign", ADMIN, json=body).status_code == 200


def test_a_body_never_brings_its_own_allowances(client: FlaskClient) -> None:
    # Issue 13: `extra_allowed` in the body was added to the CA's own allowances.
    body = {"csr": csr_pem(), "names": ["api.example.com"], "namespace": "demo"}
    answer = _post(
        client, "/sign", PROVISIONER, json={**body, "extra_allowed": ["api.example.com"]}
    )
    assert (answer.status_code, answer.json) == (400, {"error": "unknown field(s): extra_allowed"})


def test_reserved_top_level_domains_need_the_cas_allowance(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.create(State(generations=(CA.create(),)))
    body = {"csr": csr_pem(), "names": ["printer.local"], "namespace": "local"}
    refused = _post(create_app(StateCache(store)).test_client(), "/sign", PROVISIONER, json=body)
    assert (refused.status_code, refused.json) == (
        403,
        {
            "error": "name 'printer.local' is under reserved top-level domain 'local';"
            " a namespace cannot claim it"
        },
    )
    allowed = create_app(StateCache(store), extra_allowed={"local": ["*.local"]}).test_client()
    assert _post(allowed, "/sign", PROVISIONER, json=body).status_code == 200


def test_ip_addresses_need_the_cas_allowance(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.create(State(generations=(CA.create(),)))
    allowed = parse_allowed_ips('{"shop": ["10.1.0.0/16"]}')
    client = create_app(StateCache(store), allowed_ips=allowed).test_client()
    body = {"csr": csr_pem(), "names": ["web.shop.svc", "10.1.2.3"], "namespace": "shop"}
    assert _post(client, "/sign", PROVISIONER, json=body).status_code == 200
    for address in ("10.96.0.1", "169.254.169.254", "127.0.0.1"):
        answer = _post(client, "/sign", PROVISIONER, json={**body, "names": [address]})
        assert (answer.status_code, answer.json) == (
            403,
            {"error": f"IP address '{address}' is not allowed for namespace 'shop'"},
        )


def test_the_openapi_document_describes_every_route(app: Flask, client: FlaskClient) -> None:
    document = _get(client, "/openapi.json")
    assert document["openapi"].startswith("3.")
    routes = {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routes == described


def test_with_a_sign_port_signing_is_served_on_it_only(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.create(State(generations=(CA.create(),)))
    client = create_app(StateCache(store), sign_port=8444).test_client()
    body = {"csr": csr_pem(), "names": ["web.demo"], "namespace": "demo"}
    peer = {"gunicorn.socket": Peer(PROVISIONER)}
    on, off = {"SERVER_PORT": "8444"}, {"SERVER_PORT": "8443"}
    signed = client.post("/sign", environ_base=peer, environ_overrides=on, json=body)
    assert signed.status_code == 200
    refused = client.post("/sign", environ_base=peer, environ_overrides=off, json=body)
    assert refused.status_code == 404
    assert refused.json == {"error": "POST /sign is served on port 8444 only"}
    rotate = client.post("/rotate-root", environ_base=peer, environ_overrides=off, json={})
    assert rotate.json == {"error": "POST /rotate-root is served on port 8444 only"}
    for port in on, off:
        assert client.get("/roots", environ_overrides=port).status_code == 200


def _audited(tmp_path: Path) -> tuple[FlaskClient, Path]:
    store = DirectoryStore(tmp_path / "state")
    store.create(State(generations=(CA.create(),)))
    cache = StateCache(store)
    trail = tmp_path / "state" / "audit"
    log = AuditLog(trail, signing=lambda: cache.state().signer)
    return create_app(cache, audit=log).test_client(), trail


def test_a_certificate_is_answered_only_once_its_audit_record_is_written(tmp_path: Path) -> None:
    client, trail = _audited(tmp_path)
    body = {"csr": csr_pem(), "names": ["web.demo"], "namespace": "demo"}
    answer = _post(client, "/sign", PROVISIONER, json=body)
    assert answer.status_code == 200
    (record,) = audit.read(trail)
    assert record["what"]["serial"] == answer.get_json()["serial"]

    fresh, trail = _audited(tmp_path / "unwritable")
    trail.mkdir(parents=True)
    (trail / "000001.jsonl").mkdir()  # the record cannot be written
    answer = _post(fresh, "/sign", PROVISIONER, json=body)
    assert answer.status_code == 500
    assert "certificate" not in answer.get_json()


def test_a_refusal_is_recorded_with_who_asked_and_why(tmp_path: Path) -> None:
    client, trail = _audited(tmp_path)
    body = {"csr": csr_pem(), "names": ["web.shop"], "namespace": "demo"}
    assert _post(client, "/sign", PROVISIONER, json=body).status_code == 403
    assert _post(client, "/sign", OTHER_DOMAIN, json=body).status_code == 403
    first, second = audit.read(trail)
    assert first["kind"] == second["kind"] == "refusal"
    assert first["by"] == "spiffe://cluster.local/hello-mtls/provisioner/operator"
    assert first["what"]["reason"] == "policy"
    assert first["what"]["names"] == ["web.shop"]
    assert "web.shop" in first["what"]["message"]
    assert second["by"] == "spiffe://evil.example/hello-mtls/provisioner/operator"
    assert second["what"]["reason"] == "forbidden"
