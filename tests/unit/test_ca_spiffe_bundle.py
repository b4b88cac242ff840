"""The trust bundle as a SPIFFE bundle: checked against a schema written from the SPIFFE spec and
against the roots, for EC and RSA roots and through a root rotation."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mtls_ca import spiffe_bundle
from mtls_ca.authority import CA, KeyType
from mtls_ca.http_api import create_app
from mtls_ca.state import DirectoryStore, State
from mtls_ca.state_cache import StateCache
from support.spiffe_bundles import roots_of


@pytest.mark.parametrize("key_type", [KeyType.ECDSA_P256, KeyType.RSA_2048])
def test_each_root_is_a_jwk_of_its_own_key(key_type: KeyType) -> None:
    state = State(generations=(CA.create(key_type=key_type),))
    document = spiffe_bundle.bundle(state)
    assert roots_of(document) == [state.generations[0].root]
    assert document["keys"][0]["kty"] == ("EC" if key_type is KeyType.ECDSA_P256 else "RSA")
    assert document["spiffe_sequence"] == 0
    assert document["spiffe_refresh_hint"] == spiffe_bundle.REFRESH_HINT


def test_a_rotation_shows_both_roots_and_raises_the_sequence_on_each_change() -> None:
    start = State(generations=(CA.create(),))
    both = start.rotated(expected="idle")
    new_signing = both.rotated(expected="both-trusted")
    done = new_signing.rotated(expected="new-signing")
    old, new = both.generations[0].root, both.generations[1].root
    seen = [
        (roots_of(spiffe_bundle.bundle(s)), spiffe_bundle.bundle(s)["spiffe_sequence"])
        for s in (start, both, new_signing, done, done.rotated(expected="idle"))
    ]
    assert seen[:4] == [([old], 0), ([old, new], 1), ([old, new], 1), ([new], 2)]
    assert seen[4][1] == 3
    # The bundle is the same one `ca.crt` holds.
    assert [c.public_bytes(Encoding.PEM) for c in seen[1][0]] == [
        ca.root_pem for ca in both.generations
    ]


def test_the_sequence_survives_a_restart(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.create(State(generations=(CA.create(),)))
    store.update(lambda s: s.rotated(expected="idle"))
    assert DirectoryStore(tmp_path).load().bundle_sequence == 1
    assert State.from_json(store.load().signing_material().to_json()).bundle_sequence == 1


def test_a_state_from_before_the_bundle_starts_at_zero() -> None:
    state = State(generations=(CA.create(),), bundle_sequence=4)
    old = state.to_json().replace(b'"bundle_sequence": 4', b'"unrelated": 4')
    assert State.from_json(old).bundle_sequence == 0


def test_get_spiffe_bundle_serves_the_roots_of_get_roots(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.create(State(generations=(CA.create(),)))
    store.update(lambda s: s.rotated(expected="idle"))
    client = create_app(StateCache(store)).test_client()
    answer = client.get("/spiffe-bundle")
    assert (answer.status_code, answer.mimetype) == (200, "application/json")
    served = roots_of(answer.get_json())
    assert served == x509.load_pem_x509_certificates(client.get("/roots").data)
    assert len(served) == 2
    assert answer.get_json()["spiffe_sequence"] == 1


def test_the_check_refuses_a_bundle_that_breaks_the_spec_or_its_certificate() -> None:
    good = spiffe_bundle.bundle(State(generations=(CA.create(),)))
    other = spiffe_bundle.jwk(CA.create().root)
    with pytest.raises(jsonschema.ValidationError, match="'x509-svid' was expected"):
        roots_of({**good, "keys": [{**good["keys"][0], "use": "jwt-svid"}]})
    with pytest.raises(jsonschema.ValidationError, match="'spiffe_sequence' is a required"):
        roots_of({"keys": good["keys"], "spiffe_refresh_hint": 30})
    with pytest.raises(AssertionError):
        roots_of({**good, "keys": [{**good["keys"][0], "x": other["x"]}]})
