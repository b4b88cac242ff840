"""The revocation list, the index of issued certificates and the CRLs (`mtls_ca.revocation`),
and ``POST /revoke`` / ``GET /crl`` through Flask's test client."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient

from mtls_ca import revocation, sign_request
from mtls_ca.authority import CA, fingerprint
from mtls_ca.http_api import create_app
from mtls_ca.revocation import IssuedIndex, record_for, select
from mtls_ca.state import DirectoryStore, State
from mtls_ca.state_cache import StateCache
from support.ca_peers import ADMIN, PROVISIONER, Peer
from support.csrs import csr_pem

HOUR = datetime.timedelta(hours=1)


def _issue(state: State, name: str, namespace: str, account: str = "default") -> x509.Certificate:
    uri = f"spiffe://cluster.local/ns/{namespace}/sa/{account}"
    return state.signer.issue(name, uris=[uri], valid_for=HOUR).certificate


def _records(state: State, *certs: x509.Certificate) -> list[revocation.IssuedRecord]:
    return [record_for(c, state.signer.intermediate) for c in certs]


def serials(found: list[revocation.IssuedRecord]) -> set[int]:
    return {r.serial for r in found}


def test_select_by_serial_identity_and_namespace() -> None:
    state = State(generations=(CA.create(),))
    web = _issue(state, "web.shop.svc", "shop", "web")
    web2 = _issue(state, "web.shop.svc", "shop", "web")
    db = _issue(state, "db.shop.svc", "shop", "db")
    other = _issue(state, "api.demo.svc", "demo")
    records = _records(state, web, web2, db, other)
    assert serials(select(records, serial=db.serial_number)) == {db.serial_number}
    by_name = select(records, identity="WEB.shop.svc")
    assert serials(by_name) == {web.serial_number, web2.serial_number}
    by_id = select(records, identity="spiffe://cluster.local/ns/shop/sa/db")
    assert serials(by_id) == {db.serial_number}
    assert serials(select(records, namespace="shop")) == {
        web.serial_number,
        web2.serial_number,
        db.serial_number,
    }
    with pytest.raises(ValueError, match="exactly one"):
        select(records, serial=1, namespace="shop")
    with pytest.raises(ValueError):
        select(records, namespace="Not_A_Namespace")


def test_revoke_lists_the_serials_on_the_crl_of_their_issuer() -> None:
    state = State(generations=(CA.create(),))
    cert = _issue(state, "web.shop.svc", "shop")
    revoked = revocation.revoke(state, _records(state, cert), "keyCompromise")
    (crl,) = revocation.load_crls(revoked.crl_pem)
    assert crl.is_signature_valid(state.signer.intermediate.public_key())  # type: ignore[arg-type]
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = state.signer.intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ski.value.digest
    assert crl.next_update_utc is not None and crl.last_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc >= revocation.CRL_VALIDITY
    # Revoking again adds nothing and moves the CRL number on.
    again = revocation.revoke(revoked, _records(state, cert), "superseded")
    assert len(again.revoked) == 1 and again.crl_number == 2
    with pytest.raises(ValueError, match="reason 'certificateHold' is not one of"):
        revocation.revoke(state, _records(state, cert), "certificateHold")


def test_the_ca_refuses_a_revoked_key_again() -> None:
    state = State(generations=(CA.create(),))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = state.signer.sign_public_key(key.public_key(), "web.shop.svc", valid_for=HOUR)
    revoked = revocation.revoke(state, _records(state, cert.certificate), "keyCompromise")
    request = sign_request.SignRequest(key.public_key(), ("web.shop.svc",), HOUR, "shop")
    with pytest.raises(sign_request.RuleViolation, match=r"was revoked \(keyCompromise\)"):
        sign_request.sign(revoked, request, role="provisioner")
    fresh = ec.generate_private_key(ec.SECP256R1()).public_key()
    sign_request.sign(
        revoked,
        sign_request.SignRequest(fresh, ("web.shop.svc",), HOUR, "shop"),
        role="provisioner",
    )


def test_one_crl_per_valid_intermediate_and_expired_entries_dropped() -> None:
    old, new = CA.create(), CA.create()
    state = State(generations=(old, new), phase="both-trusted")
    cert = _issue(state, "web.shop.svc", "shop")
    revoked = revocation.revoke(state, _records(state, cert), "unspecified")
    crls = revocation.load_crls(revoked.crl_pem)
    assert [c.issuer for c in crls] == [old.intermediate.subject, new.intermediate.subject]
    assert [len(list(c)) for c in crls] == [1, 0]
    # RFC 5280 5.3.1: unspecified is left out rather than encoded.
    assert len(crls[0][0].extensions) == 0
    later = cert.not_valid_after_utc + HOUR
    assert revocation.with_crl(revoked, now=later).revoked == ()


def test_crl_due_daily_and_for_a_new_intermediate() -> None:
    now = datetime.datetime.now(datetime.UTC)
    state = State(generations=(CA.create(),))
    assert revocation.crl_due(state, now)
    signed = revocation.with_crl(state, now=now)
    assert not revocation.crl_due(signed, now + revocation.CRL_REFRESH - HOUR)
    assert revocation.crl_due(signed, now + revocation.CRL_REFRESH + HOUR)
    renewed = State(generations=(signed.signer.renew_intermediate(),), crl_pem=signed.crl_pem)
    assert revocation.crl_due(renewed, now)


def test_the_list_survives_the_state_file_and_an_old_state_loads(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    state = store.create(State(generations=(CA.create(),)))
    cert = _issue(state, "web.shop.svc", "shop")
    store.update(lambda s: revocation.revoke(s, _records(s, cert), "keyCompromise"))
    loaded = store.load()
    assert [(r.serial, r.reason) for r in loaded.revoked] == [(cert.serial_number, "keyCompromise")]
    assert loaded.crl_number == 1 and loaded.crl_pem.startswith(b"-----BEGIN X509 CRL-----")
    # The signers' copy carries the list and the CRLs: they refuse the key and serve the CRL.
    material = State.from_json(loaded.signing_material().to_json())
    assert material.revoked == loaded.revoked and material.crl_pem == loaded.crl_pem
    document = loaded.to_json().replace(b'"revoked"', b'"unused"')
    assert State.from_json(document).revoked == ()


def test_the_index_keeps_unexpired_records_and_skips_a_torn_line(tmp_path: Path) -> None:
    state = State(generations=(CA.create(),))
    index = IssuedIndex(tmp_path)
    cert = _issue(state, "web.shop.svc", "shop")
    index.append(record_for(cert, state.signer.intermediate))
    with index.path.open("ab") as f:
        f.write(b'{"serial": "ab", "na')
    assert [r.serial for r in index.records()] == [cert.serial_number]
    assert index.records()[0].issuer == fingerprint(state.signer.intermediate)
    assert index.prune(cert.not_valid_after_utc + HOUR) == 0
    assert index.records() == [] and index.path.read_bytes() == b""


# --- POST /revoke and GET /crl --------------------------------------------------------------


@pytest.fixture()
def served(tmp_path: Path) -> tuple[FlaskClient, State]:
    store = DirectoryStore(tmp_path)
    state = store.create(State(generations=(CA.create(),)))
    client = create_app(StateCache(store), issued=IssuedIndex(tmp_path)).test_client()
    return client, state


def _post(client: FlaskClient, path: str, peer: dict[str, Any], body: Any) -> Any:
    return client.post(path, environ_base={"gunicorn.socket": Peer(peer)}, json=body)


def test_an_admin_revokes_what_the_operator_had_signed(served: tuple[FlaskClient, State]) -> None:
    client, _ = served
    key = ec.generate_private_key(ec.SECP256R1())
    body = {"csr": csr_pem(key), "names": ["web.shop.svc"], "namespace": "shop"}
    signed = _post(client, "/sign", PROVISIONER, body)
    assert signed.status_code == 200
    serial = signed.json["serial"]
    refused = _post(client, "/revoke", PROVISIONER, {"serial": serial})
    assert (refused.status_code, refused.json) == (
        403,
        {
            "error": "client 'spiffe://cluster.local/hello-mtls/provisioner/operator' may not "
            "revoke (admins may)"
        },
    )
    done = _post(client, "/revoke", ADMIN, {"namespace": "shop", "reason": "keyCompromise"})
    assert done.status_code == 200, done.json
    assert [r["serial"] for r in done.json["revoked"]] == [serial]
    assert done.json["crl_number"] == 1
    (crl,) = revocation.load_crls(client.get("/crl").data)
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    again = _post(client, "/sign", PROVISIONER, body)
    assert again.status_code == 403 and "was revoked (keyCompromise)" in again.json["error"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ([], 400, "request body must be a JSON object"),
        ({"serial": "ab", "namespace": "shop"}, 400, "give exactly one of"),
        ({"serial": 12}, 400, "give exactly one of"),
        ({"serial": "zz"}, 400, "serial: "),
        ({"namespace": "shop", "reason": "certificateHold"}, 400, "'reason' must be one of"),
        ({"namespace": "shop", "why": "x"}, 400, "unknown field(s): why"),
        ({"identity": "nobody.shop.svc"}, 404, "no unexpired certificate of identity"),
    ],
)
def test_revoke_refusals(
    served: tuple[FlaskClient, State], body: Any, status: int, error: str
) -> None:
    client, _ = served
    answer = _post(client, "/revoke", ADMIN, body)
    assert answer.status_code == status and error in answer.json["error"]


def test_a_signer_revokes_nothing(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.create(State(generations=(CA.create(),)).signing_material())
    client = create_app(StateCache(store)).test_client()
    answer = _post(client, "/revoke", ADMIN, {"namespace": "shop"})
    assert answer.status_code == 404


def test_a_retired_intermediate_keeps_its_crl_and_signers_get_no_spare_keys(
    tmp_path: Path,
) -> None:
    old = CA.create()
    new = old.renew_intermediate()
    upcoming = new.renew_intermediate()
    state = State(generations=(new,), retired=(old,), upcoming=upcoming)
    cert = old.issue("web.shop.svc", valid_for=HOUR).certificate
    revoked = revocation.revoke(state, [record_for(cert, old.intermediate)], "keyCompromise")
    crls = {c.issuer: c for c in revocation.load_crls(revoked.crl_pem)}
    subjects = [new.intermediate.subject, upcoming.intermediate.subject, old.intermediate.subject]
    assert list(crls) == subjects
    assert crls[old.intermediate.subject].get_revoked_certificate_by_serial_number(
        cert.serial_number
    )
    store = DirectoryStore(tmp_path)
    store.create(revoked)
    loaded = store.load()
    assert loaded.upcoming is not None and loaded.upcoming.intermediate == upcoming.intermediate
    assert [r.intermediate for r in loaded.retired] == [old.intermediate]
    material = loaded.signing_material()
    assert material.upcoming is None and material.retired == ()
    assert material.crl_pem == loaded.crl_pem
