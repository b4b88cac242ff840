"""The persisted CA state: round trips, status, rotation, and the directory store."""

from __future__ import annotations

import datetime
import json
import stat
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from mtls_ca.authority import CA, fingerprint
from mtls_ca.rotation import PhaseMismatch
from mtls_ca.state import DirectoryStore, State, StateNotFound


@pytest.fixture(scope="module")
def state() -> State:
    return State(generations=(CA.create(),), trust_domain="example.org", tls_profile="modern")


def test_json_round_trip(state: State) -> None:
    loaded = State.from_json(state.to_json())
    assert loaded.status() == state.status()
    assert loaded.signer.intermediate == state.signer.intermediate


def test_status_has_the_fixed_keys_and_no_keys(state: State) -> None:
    status = state.status()
    ca = state.generations[0]
    assert status["phase"] == "idle"
    assert status["roots"] == [
        {
            "fingerprint_sha256": fingerprint(ca.root),
            "not_after": ca.root.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "subject": ca.root.subject.rfc4514_string(),
        }
    ]
    assert status["signing"]["intermediate_fingerprint_sha256"] == fingerprint(ca.intermediate)
    assert status["signing"]["root_fingerprint_sha256"] == fingerprint(ca.root)
    assert status["tls_policy"]["profile"] == "modern"
    assert status["bundle_sha256"] == state.bundle_sha256
    assert status["durations"] == {"minimum": "5m", "maximum": "30d"}
    assert "PRIVATE KEY" not in json.dumps(status)
    assert "PRIVATE KEY" in state.to_json().decode()  # the negative twin: the document has them


def test_state_rejects_inconsistent_fields(state: State) -> None:
    with pytest.raises(ValueError, match="^phase 'both-trusted' needs 2 roots, found 1$"):
        replace(state, phase="both-trusted")
    with pytest.raises(ValueError, match="^TLS profile 'x' is unknown"):
        replace(state, tls_profile="x")
    with pytest.raises(ValueError, match="^minimum duration 1h is above the maximum 30m$"):
        replace(state, minimum=datetime.timedelta(hours=1), maximum=datetime.timedelta(minutes=30))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "CA state is damaged: JSONDecodeError"),
        (b"{}", "CA state format None is not 1"),
        (b'{"format": 1}', "CA state is damaged: KeyError: 'generations'"),
        (b"[]", "CA state is damaged: AttributeError"),
    ],
)
def test_from_json_rejects_damage(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        State.from_json(data)
    assert str(info.value).startswith(message)


def test_rotation_through_the_state(state: State) -> None:
    old = state.generations[0]
    both = state.rotated(expected="idle")
    assert both.phase == "both-trusted" and both.signer is old
    assert both.bundle_pem == old.root_pem + both.generations[1].root_pem
    new_signing = both.rotated(expected="both-trusted")
    assert new_signing.signer is both.generations[1]
    assert new_signing.bundle_pem == both.bundle_pem
    done = new_signing.rotated(expected="new-signing")
    assert done.phase == "idle" and done.generations == (both.generations[1],)
    assert done.bundle_sha256 != state.bundle_sha256
    with pytest.raises(PhaseMismatch):
        done.rotated(expected="new-signing")


def test_directory_store(tmp_path: Path, state: State) -> None:
    store = DirectoryStore(tmp_path / "ca")
    with pytest.raises(StateNotFound, match="no CA state in .*run: hello-mtls-ca init"):
        store.load()
    assert store.version() == ""
    assert store.create(state) is state
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "ca" / "state.json").stat().st_mode) == 0o600
    version = store.version()
    other = State(generations=(CA.create(),))
    kept = store.create(other)  # create-if-absent: the first one stays
    assert kept.status() == state.status()
    assert store.version() == version
    updated = store.update(lambda s: replace(s, tls_profile="intermediate"))
    assert store.load().tls_profile == updated.tls_profile == "intermediate"
    assert store.version() != version
    assert [p.name for p in (tmp_path / "ca").iterdir() if p.name.endswith(".tmp")] == []


def test_concurrent_updates_lose_nothing(tmp_path: Path, state: State) -> None:
    store = DirectoryStore(tmp_path)
    store.create(state)
    second = datetime.timedelta(seconds=1)

    def bump() -> None:
        for _ in range(5):
            DirectoryStore(tmp_path).update(lambda s: replace(s, minimum=s.minimum + second))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.load().minimum == state.minimum + 20 * second


def test_signing_material_holds_no_root_key_and_one_intermediate_key(state: State) -> None:
    rotating = state.rotated(expected="idle")
    material = State.from_json(rotating.signing_material().to_json())
    assert [ca.root_key for ca in material.generations] == [None, None]
    assert material.signer.intermediate_key is not None
    assert [ca.intermediate_key is not None for ca in material.generations] == [True, False]
    assert material.material_sha256 == rotating.material_sha256
    assert material.status() == rotating.status()
    assert not material.holds_root_keys and rotating.holds_root_keys
    leaf = material.signer.issue("web.demo", valid_for=datetime.timedelta(hours=1))
    assert leaf.certificate.issuer == rotating.signer.intermediate.subject
    with pytest.raises(ValueError, match="does not hold its root key"):
        material.signer.renew_intermediate()
    with pytest.raises(ValueError, match="does not hold its intermediate's key"):
        material.generations[1].issue("web.demo", valid_for=datetime.timedelta(hours=1))


def test_the_material_digest_changes_with_what_a_signer_serves(state: State) -> None:
    digests = {
        state.material_sha256,
        state.rotated(expected="idle").material_sha256,
        replace(state, tls_profile="intermediate").material_sha256,
        replace(state, maximum=datetime.timedelta(days=1)).material_sha256,
    }
    assert len(digests) == 4
