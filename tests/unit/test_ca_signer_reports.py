"""A signer's reports of what it signs (`mtls_ca.signer_reports`: the queue, its batches, its
bound) and the root holder's ``POST /issued`` that writes them into the index, through Flask's
test client. Real signer and root holder processes: tests/integration/test_ca_signers.py."""

from __future__ import annotations

import datetime
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from mtls_ca import metrics, signer_material
from mtls_ca.authority import CA
from mtls_ca.http_api import MaterialEndpoint, create_app
from mtls_ca.revocation import IssuedIndex, IssuedRecord, record_for
from mtls_ca.signer_auth import Reviewed, SignerPolicy
from mtls_ca.signer_material import ReportRefused
from mtls_ca.signer_reports import IssuedReports
from mtls_ca.state import DirectoryStore, State
from mtls_ca.state_cache import StateCache
from support.ca_peers import ADMIN, PROVISIONER, Peer
from support.csrs import csr_pem

HOUR = datetime.timedelta(hours=1)
MATERIAL_PORT = "8445"
SIGNERS = "system:serviceaccount:hello-mtls:hello-mtls-ca-signer"


def record(serial: int, name: str = "web.shop.svc") -> IssuedRecord:
    return IssuedRecord(
        serial=serial,
        names=(name,),
        spiffe_id="spiffe://cluster.local/ns/shop/sa/web",
        key_sha256="ab" * 32,
        issuer="cd" * 32,
        not_after=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
    )


def dropped(reason: str) -> float:
    sample = metrics._REGISTRY.get_sample_value(
        "hello_mtls_ca_index_reports_dropped_total", {"reason": reason}
    )
    assert sample is not None
    return sample


class RootHolder:
    """Takes batches (`RootHolder.report`'s place), or fails while ``away``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.away = False

    def report(self, records: Sequence[IssuedRecord]) -> None:
        if self.away:
            raise OSError("root holder https://127.0.0.1:1: connection refused")
        self.batches.append([r.serial for r in records])


def test_records_go_in_order_in_batches_of_bounded_size() -> None:
    holder = RootHolder()
    size = len(json.dumps(record(1).to_json(), separators=(",", ":"))) + 1
    reports = IssuedReports(holder.report, batch_bytes=3 * size)
    for serial in range(1, 8):
        reports.append(record(serial))
    assert reports.pending == 7
    assert reports.deliver() == 0
    assert holder.batches == [[1, 2, 3], [4, 5, 6], [7]]
    assert reports.pending == 0
    assert reports.deliver() == 0 and len(holder.batches) == 3  # nothing to send, nothing sent


def test_while_the_root_holder_is_away_records_wait_and_go_on_its_return(
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = RootHolder()
    reports = IssuedReports(holder.report)
    holder.away = True
    with caplog.at_level(logging.INFO, logger="mtls_ca"):
        reports.append(record(1))
        assert reports.deliver() == 1
        reports.append(record(2))
        assert reports.deliver() == 2
        holder.away = False
        assert reports.deliver() == 0
    assert holder.batches == [[1, 2]]
    assert [r.getMessage() for r in caplog.records] == [
        "1 records of issued certificates wait for the root holder's index (root holder "
        "https://127.0.0.1:1: connection refused); retrying",
        "the root holder's index takes records of issued certificates again (0 dropped meanwhile)",
    ]


def test_a_full_queue_drops_the_oldest_counts_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = RootHolder()
    reports = IssuedReports(holder.report, capacity=3)
    holder.away = True
    before = dropped("queue_full")
    with caplog.at_level(logging.WARNING, logger="mtls_ca"):
        for serial in range(1, 7):
            reports.append(record(serial))
    assert reports.pending == 3
    assert dropped("queue_full") == before + 3
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "3 records of issued certificates wait for the root holder's index: dropping the "
        "oldest from now on (serial 1 first); revoke such a certificate with revoke --cert"
    ]
    holder.away = False
    with caplog.at_level(logging.INFO, logger="mtls_ca"):
        assert reports.deliver() == 0
    assert holder.batches == [[4, 5, 6]]
    assert caplog.records[-1].getMessage().endswith("again (3 dropped meanwhile)")


def test_the_batch_being_sent_is_not_dropped_for_a_newer_record() -> None:
    sending, release = threading.Event(), threading.Event()
    taken: list[list[int]] = []

    def slow(records: Sequence[IssuedRecord]) -> None:
        sending.set()
        assert release.wait(10)
        taken.append([r.serial for r in records])

    reports = IssuedReports(slow, capacity=3)
    for serial in (1, 2):
        reports.append(record(serial))
    worker = threading.Thread(target=reports.deliver)
    worker.start()
    assert sending.wait(10)
    # The root holder is slow to answer: signing does not wait for it.
    for serial in (3, 4, 5):
        reports.append(record(serial))  # 3 fits; 4 drops 3, 5 drops 4
    assert reports.pending == 3
    release.set()
    worker.join(10)
    assert taken == [[1, 2]]  # what came while a batch was sent waits for the next round
    assert reports.deliver() == 0
    assert taken == [[1, 2], [5]]


def test_a_batch_the_root_holder_refuses_is_dropped_and_the_rest_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    taken: list[list[int]] = []

    def picky(records: Sequence[IssuedRecord]) -> None:
        if records[0].serial == 1:
            raise ReportRefused("root holder https://127.0.0.1:1: issued[0]: 'names' must be ...")
        taken.append([r.serial for r in records])

    size = len(json.dumps(record(1).to_json(), separators=(",", ":"))) + 1
    reports = IssuedReports(picky, batch_bytes=size)
    before = dropped("refused")
    for serial in (1, 2):
        reports.append(record(serial))
    with caplog.at_level(logging.ERROR, logger="mtls_ca"):
        assert reports.deliver() == 0
    assert taken == [[2]] and dropped("refused") == before + 1
    assert caplog.records[0].getMessage().startswith("the root holder refused 1 records: ")


def test_close_delivers_what_is_left_or_says_how_much_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = RootHolder()
    reports = IssuedReports(holder.report)
    reports.append(record(1))
    assert reports.close() == 0 and holder.batches == [[1]]
    holder.away = True
    reports.append(record(2))
    before = dropped("exit")
    with caplog.at_level(logging.WARNING, logger="mtls_ca"):
        assert reports.close() == 1
    assert dropped("exit") == before + 1
    assert (
        caplog.records[-1]
        .getMessage()
        .startswith(
            "exiting with 1 records of issued certificates the root holder's index never got"
        )
    )


def test_the_thread_delivers_every_interval() -> None:
    arrived = threading.Event()
    reports = IssuedReports(lambda records: arrived.set())
    stop = reports.start(0.01)
    try:
        reports.append(record(1))
        assert arrived.wait(10)
    finally:
        stop.set()


# --- the record's form, and the index ------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"serial": "0"}, "'serial' must be a positive hex number of at most 40 digits"),
        ({"serial": "f" * 41}, "'serial' must be a positive hex number of at most 40 digits"),
        ({"names": "web.shop.svc"}, "'names' must be a list of strings"),
        ({"spiffe_id": 7}, "'spiffe_id' must be a string or null"),
        ({"key_sha256": "AB" * 32}, "'key_sha256' must be a SHA-256 in lowercase hex"),
        ({"issuer": "cd"}, "'issuer' must be a SHA-256 in lowercase hex"),
        ({"not_after": "tomorrow"}, "'not_after' must be a time like 2026-12-07T12:00:00Z"),
        ({"not_after": "2030-01-01T00:00:00+00:00"}, "'not_after' must be a time like "),
        ({"not_after": "2030-1-1T00:00:00Z"}, "'not_after' must be a time like "),
        ({"not_after": "2030-01-01T00:00:00.5Z"}, "'not_after' must be a time like "),
        ({"not_after": "2030-01-01T00:00:60Z"}, "'not_after' must be a time like "),
        ({"not_after": "2030-02-30T00:00:00Z"}, "'not_after' must be a time like "),
        ({"extra": 1}, "a record has the fields issuer, key_sha256, names, not_after, serial, "),
    ],
)
def test_a_record_of_another_form_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        IssuedRecord.from_json({**record(1).to_json(), **change})
    assert IssuedRecord.from_json(record(1).to_json()) == record(1)


def test_the_index_lists_a_certificate_sent_twice_once_and_mends_a_torn_line(
    tmp_path: Path,
) -> None:
    index = IssuedIndex(tmp_path)
    index.extend([record(1), record(2)])
    index.extend([record(2)])  # the answer to the first batch was lost: sent again
    with index.path.open("ab") as f:
        f.write(b'{"serial": "ab", "na')  # a crash mid-append
    index.append(record(3))
    assert [r.serial for r in index.records()] == [1, 2, 3]


# --- POST /issued on the root holder, POST /sign on a signer --------------------------------


class Reviewer:
    """The API server's TokenReview: ``signer-token`` is a signer pod's."""

    def review(self, token: str, audience: str) -> Reviewed:
        if token == "signer-token":
            return Reviewed(True, (audience,), SIGNERS, pod_name="hello-mtls-ca-signer-1")
        return Reviewed(False, error="invalid bearer token")


@pytest.fixture()
def root_holder(tmp_path: Path) -> tuple[FlaskClient, State, IssuedIndex]:
    store = DirectoryStore(tmp_path)
    state = store.create(State(generations=(CA.create(),)))
    policy = SignerPolicy("hello-mtls", "hello-mtls-ca-signer", "ca-signer", Reviewer())
    index = IssuedIndex(tmp_path)
    app = create_app(
        StateCache(store), material=MaterialEndpoint(int(MATERIAL_PORT), policy), issued=index
    )
    return app.test_client(), state, index


def post_issued(
    client: FlaskClient,
    body: Any,
    token: str | None = "signer-token",
    peer: dict[str, Any] | None = None,
    port: str = MATERIAL_PORT,
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(
        "/issued",
        json=body,
        headers=headers,
        environ_base={"gunicorn.socket": Peer(peer)},
        environ_overrides={"SERVER_PORT": port},
    )


def signed_record(state: State, name: str) -> IssuedRecord:
    uri = "spiffe://cluster.local/ns/shop/sa/web"
    cert = state.signer.issue(name, uris=[uri], valid_for=HOUR).certificate
    return record_for(cert, state.signer.intermediate)


def test_the_root_holder_writes_a_signers_records_into_its_index(
    root_holder: tuple[FlaskClient, State, IssuedIndex],
) -> None:
    client, state, index = root_holder
    web, other = signed_record(state, "web.shop.svc"), record(99)  # of no CA of this state
    answer = post_issued(client, {"issued": [web.to_json(), other.to_json()]})
    assert (answer.status_code, answer.json) == (200, {"recorded": 1, "ignored": 1})
    assert index.records() == [web]


class Session:
    """A kept `requests.Session`'s place: keeps what `RootHolder.report` posts."""

    def __init__(self) -> None:
        self.posted: list[tuple[bytes, dict[str, str]]] = []

    def post(self, url: str, *, data: bytes, headers: dict[str, str], **_: Any) -> Any:
        self.posted.append((data, headers))
        return type("Answer", (), {"status_code": 200})()


def test_a_signers_report_is_what_the_root_holder_writes_into_its_index(
    root_holder: tuple[FlaskClient, State, IssuedIndex], tmp_path: Path
) -> None:
    client, state, index = root_holder
    (tmp_path / "token").write_text("signer-token\n")
    sender = signer_material.RootHolder("https://127.0.0.1:1", tmp_path, tmp_path / "token")
    sender._kept.session = session = Session()
    sent = [signed_record(state, "web.shop.svc"), signed_record(state, "api.shop.svc")]
    sender.report(sent)
    [(body, headers)] = session.posted
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"issued": [r.to_json() for r in sent]}
    assert post_issued(client, json.loads(body)).json == {"recorded": 2, "ignored": 0}
    assert index.records() == sent
    assert index.path.read_bytes() == b"".join(r.line for r in sent)


@pytest.mark.parametrize(
    ("token", "peer", "status", "error"),
    [
        (None, None, 401, "a signer's bearer token is required"),
        (
            None,
            ADMIN,
            403,
            "'spiffe://cluster.local/hello-mtls/admin/alice' is not a CA signer (a signer's "
            "token is required)",
        ),
        (
            None,
            PROVISIONER,
            403,
            "'spiffe://cluster.local/hello-mtls/provisioner/operator' is not a CA signer (a "
            "signer's token is required)",
        ),
        ("operator-token", PROVISIONER, 403, "the API server did not authenticate the token: "),
    ],
)
def test_only_a_signer_may_write_into_the_index(
    root_holder: tuple[FlaskClient, State, IssuedIndex],
    token: str | None,
    peer: dict[str, Any] | None,
    status: int,
    error: str,
) -> None:
    client, state, index = root_holder
    body = {"issued": [signed_record(state, "web.shop.svc").to_json()]}
    answer = post_issued(client, body, token=token, peer=peer)
    assert answer.status_code == status and answer.json["error"].startswith(error)
    material = client.post(
        "/signing-material",
        environ_base={"gunicorn.socket": Peer(peer)},
        environ_overrides={"SERVER_PORT": MATERIAL_PORT},
        headers={"Authorization": f"Bearer {token}"} if token is not None else {},
    )
    assert (material.status_code, material.json) == (answer.status_code, answer.json)
    assert index.records() == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], 'request body must be {"issued": [record, ...]}'),
        ({"issued": {}}, 'request body must be {"issued": [record, ...]}'),
        ({"issued": [], "more": 1}, 'request body must be {"issued": [record, ...]}'),
        ({"issued": [{**record(1).to_json(), "names": "x"}]}, "issued[0]: 'names' must be a "),
    ],
)
def test_a_malformed_report_is_refused_whole(
    root_holder: tuple[FlaskClient, State, IssuedIndex], body: Any, error: str
) -> None:
    client, _, index = root_holder
    answer = post_issued(client, body)
    assert answer.status_code == 400 and answer.json["error"].startswith(error)
    assert index.records() == []


def test_the_index_is_written_on_the_material_port_only_and_by_a_root_holder_only(
    root_holder: tuple[FlaskClient, State, IssuedIndex], tmp_path: Path
) -> None:
    client, state, _ = root_holder
    body = {"issued": [signed_record(state, "web.shop.svc").to_json()]}
    elsewhere = post_issued(client, body, port="8443")
    assert (elsewhere.status_code, elsewhere.json) == (
        404,
        {"error": "POST /issued is served on port 8445 only"},
    )
    roots = client.get("/roots", environ_overrides={"SERVER_PORT": MATERIAL_PORT})
    assert roots.json == {"error": "port 8445 serves POST /signing-material and POST /issued only"}
    signer = DirectoryStore(tmp_path / "signer")
    signer.create(state.signing_material())
    answer = post_issued(create_app(StateCache(signer)).test_client(), body)
    assert (answer.status_code, answer.json) == (
        404,
        {"error": "this CA keeps no index for signers"},
    )


def test_a_signer_queues_the_record_of_what_it_signs(tmp_path: Path) -> None:
    holder = RootHolder()
    reports = IssuedReports(holder.report)
    store = DirectoryStore(tmp_path)
    store.create(State(generations=(CA.create(),)).signing_material())
    client = create_app(StateCache(store), reports=reports).test_client()
    body = {"csr": csr_pem(), "names": ["web.shop.svc"], "namespace": "shop"}
    answer = client.post("/sign", json=body, environ_base={"gunicorn.socket": Peer(PROVISIONER)})
    assert answer.status_code == 200
    assert reports.pending == 1
    reports.deliver()
    assert holder.batches == [[int(answer.get_json()["serial"], 16)]]
