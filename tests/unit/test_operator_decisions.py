"""Secret bodies, the healing decision, conflicts, the rotation gate and retry backoff."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mtls_ca import authority
from mtls_ca.http_api import create_app
from mtls_ca.state import DirectoryStore, State
from mtls_ca.state_cache import StateCache
from mtls_ca.tls_profiles import PROFILES, policy_bytes, render
from mtls_context.layout import CA, CERT, CRL, KEY, POLICY
from mtls_contract.ca_api import parse_sign_answer
from mtls_contract.marks import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CLAIM,
    ANNOTATION_SERIAL,
    LABEL_MANAGED,
)
from mtls_operator.ca_view import CAView, view_from_status
from mtls_operator.certs import inspect
from mtls_operator.claims import Claim, ClaimingPod
from mtls_operator.decisions import Action, choose_claim, decide
from mtls_operator.retries import Retries
from mtls_operator.rotation import KUBELET_PROJECTION_DELAY, RotationGate, reflects
from mtls_operator.tlssecret import (
    decode_data,
    merge_owners,
    policy_config_map,
    secret_body,
    trust_data,
)
from support.operator_pki import PKI, POLICY_DOC

UTC = datetime.UTC
HOUR = datetime.timedelta(hours=1)
SECOND = datetime.timedelta(seconds=1)
CLAIM = Claim("shop", "web-tls", ("web.shop",), datetime.timedelta(hours=24), "web")


def pod(name: str, uid: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "uid": uid}}


def answer_for(pki: PKI) -> dict[str, object]:
    data = pki.data("web.shop")
    return {
        "certificate": data[CERT].decode(),
        "ca": data[CA].decode(),
        "tls_policy": POLICY_DOC,
        "serial": "1f",
        "not_after": "2026-11-24T00:00:00Z",
        "bundle_sha256": pki.view.bundle_sha256,
    }


def test_secret_body_holds_the_four_files_and_no_key_outside_data() -> None:
    pki = PKI()
    answer = parse_sign_answer(answer_for(pki))
    key_pem = pki.data("web.shop")[KEY]
    body = secret_body(CLAIM, key_pem, answer, pods=[pod("web-1", "u1")], labels={"app": "x"})
    assert body["type"] == "kubernetes.io/tls"
    assert body["metadata"]["name"] == "web-tls" and body["metadata"]["namespace"] == "shop"
    assert body["metadata"]["labels"] == {"app": "x", LABEL_MANAGED: "true"}
    notes = body["metadata"]["annotations"]
    assert notes[ANNOTATION_SERIAL] == "1f"
    assert notes[ANNOTATION_BUNDLE] == pki.view.bundle_sha256
    assert notes[ANNOTATION_CLAIM] == CLAIM.digest
    data = decode_data(body)
    assert data[KEY] == key_pem
    assert json.loads(data[POLICY]) == POLICY_DOC
    assert base64.b64encode(key_pem).decode() not in json.dumps(body["metadata"])
    assert b"PRIVATE KEY" not in json.dumps(body["metadata"]).encode()
    assert body["metadata"]["ownerReferences"] == [
        {
            "controller": False,
            "blockOwnerDeletion": False,
            "apiVersion": "v1",
            "kind": "Pod",
            "name": "web-1",
            "uid": "u1",
        }
    ]


@pytest.mark.parametrize("missing", ["certificate", "ca", "tls_policy", "serial", "not_after"])
def test_an_incomplete_answer_is_refused(missing: str) -> None:
    document = answer_for(PKI())
    del document[missing]
    with pytest.raises(ValueError, match=f"CA answer lacks '{missing}'"):
        parse_sign_answer(document)


def test_owners_merge_once_per_pod_and_keep_others() -> None:
    secret: dict[str, object] = {"metadata": {"ownerReferences": [{"uid": "user-set"}]}}
    assert merge_owners(secret, [pod("web-1", "u1"), pod("web-2", "u2")])
    assert not merge_owners(secret, [pod("web-1", "u1")])
    uids = [r["uid"] for r in secret["metadata"]["ownerReferences"]]  # type: ignore[index]
    assert uids == ["user-set", "u1", "u2"]


def test_trust_data_rewrites_only_bundle_and_policy() -> None:
    view = PKI().view
    assert set(trust_data(view)) == {CA, POLICY}
    assert decode_data({"data": trust_data(view)})[POLICY] == policy_bytes(POLICY_DOC)


def decision(
    pki: PKI,
    data: dict[str, bytes] | None,
    *,
    claim: str = CLAIM.digest,
    ca: CAView | None = None,
    now: datetime.datetime | None = None,
) -> tuple[Action, str]:
    d = decide(
        CLAIM,
        None if data is None else inspect(data),
        claim,
        pki.view if ca is None else ca,
        now=now or datetime.datetime.now(UTC),
        fraction=2 / 3,
    )
    return d.action, d.reason


def test_a_valid_secret_needs_nothing() -> None:
    pki = PKI()
    assert decision(pki, pki.data("web.shop")) == (Action.NOTHING, "up to date")


@pytest.mark.parametrize("profile", list(PROFILES))
def test_trust_the_ca_wrote_is_not_rewritten(tmp_path: Path, profile: str) -> None:
    """The operator's view comes from the CA's ``GET /status`` JSON; a Secret whose files are
    byte for byte what the CA writes must not look changed (else every pass rewrites it)."""
    store = DirectoryStore(tmp_path / "ca")
    state = store.create(State(generations=(authority.CA.create(),), tls_profile=profile))
    api = create_app(StateCache(store)).test_client()
    view = view_from_status(api.get("/status").get_json(), api.get("/roots").data)
    issued = state.signer.issue(
        "web.shop",
        uris=[CLAIM.spiffe_id(state.trust_domain)],
        valid_for=datetime.timedelta(hours=24),
    )
    assert issued.key_pem is not None
    written_by_the_ca = {
        CERT: issued.chain_pem,
        KEY: issued.key_pem,
        CA: state.bundle_pem,
        POLICY: render(profile),
    }
    trust = decode_data({"data": trust_data(view)})
    assert trust == {name: written_by_the_ca[name] for name in (CA, POLICY)}
    d = decide(
        CLAIM,
        inspect(written_by_the_ca),
        CLAIM.digest,
        view,
        now=datetime.datetime.now(UTC),
        fraction=2 / 3,
    )
    assert (d.action, d.reason) == (Action.NOTHING, "up to date")


def test_without_ca_state_only_the_secret_itself_is_judged() -> None:
    pki = PKI()
    d = decide(
        CLAIM,
        inspect(pki.data()),
        CLAIM.digest,
        None,
        now=datetime.datetime.now(UTC),
        fraction=2 / 3,
    )
    assert d.action is Action.NOTHING
    d = decide(CLAIM, None, None, None, now=datetime.datetime.now(UTC), fraction=2 / 3)
    assert d.action is Action.ISSUE


def test_drift_is_detected() -> None:
    pki = PKI()
    data = pki.data("web.shop")
    now = datetime.datetime.now(UTC)
    view = pki.view
    three_hours = pki.data("web.shop", valid_for=3 * HOUR)
    other_intermediate = PKI.fingerprint(pki.root.create_child_ca())
    policy = {**POLICY_DOC, "profile": "modern"}
    cases = {
        "no Secret": decision(pki, None),
        "missing tls.crt, tls.key, ca.crt, tls-policy.json": decision(pki, {}),
        "tls.key does not match tls.crt": decision(pki, {**data, KEY: pki.data()[KEY]}),
        "annotations changed": decision(pki, data, claim="something-else"),
        "certificate names differ from the claim": decision(pki, pki.data("api.shop")),
        "certificate SPIFFE ID differs from the claim": decision(
            pki, pki.data("web.shop", uris=("spiffe://cluster.local/ns/shop/sa/admin",))
        ),
        "renewal due": decision(pki, three_hours, now=now + 2 * HOUR + 60 * SECOND),
        "certificate expired": decision(pki, three_hours, now=now + 4 * HOUR),
        "not signed by the current intermediate": decision(
            pki, data, ca=CAView(other_intermediate, b"", view.bundle_sha256, POLICY_DOC)
        ),
        "trust bundle changed": decision(
            pki, data, ca=CAView(view.intermediate_sha256, b"two roots", "b" * 64, POLICY_DOC)
        ),
        "TLS policy changed": decision(
            pki, data, ca=CAView(view.intermediate_sha256, b"", view.bundle_sha256, policy)
        ),
    }
    for reason, (action, said) in cases.items():
        assert said == reason
        refresh = reason in {"trust bundle changed", "TLS policy changed"}
        assert action is (Action.REFRESH_TRUST if refresh else Action.ISSUE), reason
    assert decision(pki, three_hours, now=now + 2 * HOUR - 60 * SECOND)[0] is Action.NOTHING


def pod_claim(name: str, created: str, names: tuple[str, ...]) -> ClaimingPod:
    claim = Claim("shop", "web-tls", names, HOUR, "web")
    return ClaimingPod("shop", name, f"uid-{name}", created, claim)


def test_the_claim_in_the_secret_wins_a_conflict_whatever_the_order() -> None:
    old = pod_claim("a", "2026-01-01T00:00:00Z", ("web.shop",))
    new = pod_claim("b", "2026-01-02T00:00:00Z", ("api.shop",))
    assert new.claim is not None
    for pods in ([old, new], [new, old]):
        claim, agree, disagree = choose_claim(pods, new.claim.digest)
        assert claim == new.claim and agree == [new] and disagree == [old]


def test_without_a_secret_the_oldest_pod_wins() -> None:
    old = pod_claim("b", "2026-01-01T00:00:00Z", ("web.shop",))
    new = pod_claim("a", "2026-01-02T00:00:00Z", ("api.shop",))
    twin = pod_claim("c", "2026-01-03T00:00:00Z", ("web.shop",))
    for pods in ([old, new, twin], [twin, new, old]):
        claim, agree, disagree = choose_claim(pods, None)
        assert claim == old.claim and agree == [old, twin] and disagree == [new]
    with pytest.raises(ValueError, match="no pods"):
        choose_claim([], None)


def test_rotation_advances_only_after_every_secret_and_the_grace() -> None:
    gate = RotationGate(grace=datetime.timedelta(seconds=30))
    t0 = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    sec = datetime.timedelta(seconds=1)
    assert gate.step("idle", 0, t0) is None
    assert gate.step("both-trusted", 3, t0) is None
    assert gate.step("both-trusted", 0, t0 + 10 * sec) is None
    assert gate.ready_since == t0 + 10 * sec
    assert gate.step("both-trusted", 0, t0 + 39 * sec) is None
    assert gate.step("both-trusted", 1, t0 + 39 * sec) is None  # a Secret fell behind
    assert gate.step("both-trusted", 0, t0 + 45 * sec) is None
    assert gate.step("both-trusted", 0, t0 + 75 * sec) == "both-trusted"
    assert gate.step("both-trusted", 0, t0 + 76 * sec) is None  # asked once per grace
    assert gate.step("new-signing", 0, t0 + 80 * sec) is None
    assert gate.step("new-signing", 0, t0 + 110 * sec) == "new-signing"
    assert gate.step("idle", 0, t0 + 500 * sec) is None


def test_each_step_waits_for_the_kubelet_to_update_pod_certificate_pods() -> None:
    """The kubelet puts a changed ClusterTrustBundle, or a certificate just issued, into a pod only
    on its periodic resync: with pod-certificate pods, both-trusted waits
    `KUBELET_PROJECTION_DELAY`, not 30 s, before the CA signs with an intermediate only the new
    root vouches for, and new-signing as long before the old root goes."""
    gate = RotationGate(grace=datetime.timedelta(seconds=30))
    t0 = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    wait = KUBELET_PROJECTION_DELAY
    assert wait >= datetime.timedelta(minutes=1, seconds=30)
    sec = datetime.timedelta(seconds=1)
    assert gate.step("both-trusted", 0, t0, pod_certificates=True) is None
    assert gate.step("both-trusted", 0, t0 + 31 * sec, pod_certificates=True) is None
    assert gate.step("both-trusted", 0, t0 + wait - sec, pod_certificates=True) is None
    assert gate.step("both-trusted", 0, t0 + wait, pod_certificates=True) == "both-trusted"
    assert gate.step("new-signing", 0, t0 + wait + sec, pod_certificates=True) is None
    assert gate.step("new-signing", 0, t0 + wait + 31 * sec, pod_certificates=True) is None
    assert gate.step("new-signing", 0, t0 + 2 * wait + sec, pod_certificates=True) == (
        "new-signing"
    )


def test_a_secret_reflects_a_phase_by_its_bundle_and_then_its_intermediate() -> None:
    pki = PKI()
    found = inspect(pki.data("web.shop"))
    view = pki.view
    assert reflects(
        found, CAView(view.intermediate_sha256, b"", view.bundle_sha256, {}, "both-trusted")
    )
    assert not reflects(found, CAView(view.intermediate_sha256, b"", "x", {}, "both-trusted"))
    assert not reflects(found, CAView("new", b"", view.bundle_sha256, {}, "new-signing"))
    assert reflects(
        found, CAView(view.intermediate_sha256, b"", view.bundle_sha256, {}, "new-signing")
    )


def test_retries_back_off_exponentially_up_to_the_maximum() -> None:
    retries = Retries(initial=1, maximum=8)
    delays = [retries.failed("k", 100.0) for _ in range(6)]
    assert delays == [1, 2, 4, 8, 8, 8]
    assert retries.failures("k") == 6
    assert retries.due(107.9) == [] and retries.due(108.0) == ["k"]
    assert retries.due(108.0) == [], "a due key is handed out once"
    retries.failed("k", 200.0)
    assert retries.due(208.0) == ["k"]
    retries.succeeded("k")
    assert retries.due(1000.0) == [] and retries.failures("k") == 0


def _crl_of(pki: PKI, *revoked: bytes) -> bytes:
    """A CRL of ``pki``'s intermediate listing the leaves of the Secret data ``revoked``."""
    key = serialization.load_pem_private_key(pki.intermediate.private_key_pem.bytes(), None)
    issuer = x509.load_pem_x509_certificate(pki.intermediate.cert_pem.bytes())
    now = datetime.datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now)
        .next_update(now + 24 * HOUR)
    )
    for chain in revoked:
        serial = x509.load_pem_x509_certificates(chain)[0].serial_number
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
        builder = builder.add_revoked_certificate(entry.build())
    signed = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return signed.public_bytes(serialization.Encoding.PEM)


def test_a_revoked_secret_is_issued_anew_and_a_new_crl_is_written_beside_ca_crt() -> None:
    # Issue 23: the operator puts the CA's CRL in every Secret and re-issues a revoked one.
    pki = PKI()
    data, other = pki.data("web.shop"), pki.data("web.shop")
    crl = _crl_of(pki, data[CERT])
    status = {
        "signing": {"intermediate_fingerprint_sha256": pki.view.intermediate_sha256},
        "bundle_sha256": pki.view.bundle_sha256,
        "tls_policy": POLICY_DOC,
        "phase": "idle",
        "trust_domain": "cluster.local",
    }
    view = view_from_status(status, pki.view.bundle_pem, crl)
    serial = format(x509_serial(data[CERT]), "x")
    assert view.revoked_serials == frozenset({serial})
    assert decision(pki, data, ca=view) == (Action.ISSUE, "certificate revoked")
    # Another certificate: only its ca.crl is behind.
    assert decision(pki, other, ca=view) == (Action.REFRESH_TRUST, "CRL changed")
    refreshed = {**other, **decode_data({"data": trust_data(view)})}
    assert refreshed[CRL] == crl
    assert decision(pki, refreshed, ca=view) == (Action.NOTHING, "up to date")
    body = secret_body(
        CLAIM, data[KEY], parse_sign_answer({**answer_for(pki), "crl": crl.decode()}), pods=[]
    )
    assert decode_data(body)[CRL] == crl
    config_map = policy_config_map("shop", POLICY_DOC, crl_pem=crl)
    assert config_map["data"][CRL] == crl.decode()
    assert CRL not in policy_config_map("shop", POLICY_DOC)["data"]


def x509_serial(chain: bytes) -> int:
    return x509.load_pem_x509_certificates(chain)[0].serial_number


def test_a_renewal_request_reissues_a_secret_that_is_up_to_date() -> None:
    """``hello-mtls renew`` (the Secret's ``hello-mtls.dev/renew``); a broken Secret keeps the
    reason that says what was wrong with it."""
    pki = PKI()
    now = datetime.datetime.now(UTC)
    asked = decide(
        CLAIM,
        inspect(pki.data("web.shop")),
        CLAIM.digest,
        pki.view,
        now=now,
        fraction=2 / 3,
        renew_requested=True,
    )
    assert (asked.action, asked.reason) == (Action.ISSUE, "renewal requested")
    emptied = decide(CLAIM, inspect({}), CLAIM.digest, pki.view, now=now, fraction=2 / 3)
    broken = decide(
        CLAIM, inspect({}), CLAIM.digest, pki.view, now=now, fraction=2 / 3, renew_requested=True
    )
    assert broken == emptied
