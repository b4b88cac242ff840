"""The service's upkeep: serving certificate, intermediate, credential."""

from __future__ import annotations

import datetime
import os
from dataclasses import replace
from pathlib import Path

from cryptography import x509

from mtls_ca.revocation import load_crls
from mtls_ca.state import DirectoryStore
from mtls_ca.state_cache import StateCache
from mtls_ca.upkeep import Serving, Upkeep, is_current
from mtls_context import layout, server_context

# An hour off the clock: a round decides and issues by the time it is given, so the tests do not
# depend on how long after the import they run.
NOW = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)


class Sink:
    location = "memory"

    def __init__(self) -> None:
        self.files: dict[str, bytes] | None = None
        self.writes = 0

    def read(self) -> dict[str, bytes] | None:
        return self.files

    def write(self, files: dict[str, bytes]) -> bool:
        self.files, self.writes = files, self.writes + 1
        return True


def _upkeep(store: DirectoryStore, tmp_path: Path, sink: Sink | None = None) -> Upkeep:
    serving = Serving(tmp_path / "serving", ("localhost", "127.0.0.1"), datetime.timedelta(hours=3))
    return Upkeep(
        StateCache(store), serving, credential=sink, credential_duration=datetime.timedelta(days=3)
    )


def test_upkeep_issues_the_serving_certificate_once(store: DirectoryStore, tmp_path: Path) -> None:
    upkeep = _upkeep(store, tmp_path)
    upkeep.run(NOW)
    version = os.readlink(tmp_path / "serving" / layout.DATA_LINK)
    context = server_context(tmp_path / "serving")  # a valid server certificate set
    assert context.certificate.identity == "localhost"
    upkeep.run(NOW)
    assert os.readlink(tmp_path / "serving" / layout.DATA_LINK) == version
    upkeep.run(NOW + datetime.timedelta(hours=2, minutes=1))  # past 2/3 of 3h
    assert os.readlink(tmp_path / "serving" / layout.DATA_LINK) != version


def test_upkeep_follows_rotation(store: DirectoryStore, tmp_path: Path) -> None:
    upkeep = _upkeep(store, tmp_path)
    upkeep.run(NOW)
    files = layout.read_version(tmp_path / "serving")
    upkeep.cache.update(lambda s: s.rotated(expected="idle"))
    upkeep.run(NOW)
    both = layout.read_version(tmp_path / "serving")
    assert both[layout.CA] != files[layout.CA] and both[layout.CA].count(b"BEGIN") == 2
    upkeep.cache.update(lambda s: s.rotated(expected="both-trusted"))
    upkeep.run(NOW)
    new = layout.read_version(tmp_path / "serving")
    assert (
        x509.load_pem_x509_certificates(new[layout.CERT])[1]
        == upkeep.cache.state().signer.intermediate
    )


def test_upkeep_renews_the_intermediate_at_two_thirds(
    store: DirectoryStore, tmp_path: Path
) -> None:
    upkeep = _upkeep(store, tmp_path)
    before = store.load().signer
    upkeep.run(NOW + datetime.timedelta(days=200))  # 1y intermediate: not yet due
    assert store.load().signer.intermediate == before.intermediate
    upkeep.run(NOW + datetime.timedelta(days=250))
    # First its successor: on the CRLs a day before it signs (issue 23), so that no server
    # meets a leaf of an intermediate it holds no CRL of.
    upcoming = store.load().upcoming
    assert upcoming is not None and store.load().signer.intermediate == before.intermediate
    crl_issuers = [c.issuer for c in load_crls(store.load().crl_pem)]
    assert crl_issuers == [before.intermediate.subject, upcoming.intermediate.subject]
    upkeep.run(NOW + datetime.timedelta(days=250, hours=23))
    assert store.load().signer.intermediate == before.intermediate
    upkeep.run(NOW + datetime.timedelta(days=251, hours=1))
    after = store.load().signer
    assert after.root == before.root and after.intermediate == upcoming.intermediate
    # The old one retires: its CRL stays while a leaf of it may be valid (30 days at most).
    assert [r.intermediate for r in store.load().retired] == [before.intermediate]
    assert store.load().upcoming is None
    crl_issuers = [c.issuer for c in load_crls(store.load().crl_pem)]
    assert crl_issuers == [after.intermediate.subject, before.intermediate.subject]
    upkeep.run(NOW + datetime.timedelta(days=283))
    assert store.load().retired == ()
    assert [c.issuer for c in load_crls(store.load().crl_pem)] == [after.intermediate.subject]
    # Another worker that saw the old intermediate renews nothing twice.
    stale = Upkeep(StateCache(store, refresh_interval=3600), upkeep.serving)
    stale.cache._state = replace(stale.cache.state(), generations=(before,))
    stale.run(NOW + datetime.timedelta(days=283))
    assert store.load().signer.intermediate == after.intermediate


def test_upkeep_keeps_the_credential_current(store: DirectoryStore, tmp_path: Path) -> None:
    sink = Sink()
    upkeep = _upkeep(store, tmp_path, sink)
    upkeep.run(NOW)
    assert sink.writes == 1 and sink.files is not None
    leaf = x509.load_pem_x509_certificates(sink.files[layout.CERT])[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/hello-mtls/provisioner/operator"
    ]
    upkeep.run(NOW + datetime.timedelta(days=1))
    assert sink.writes == 1
    upkeep.run(NOW + datetime.timedelta(days=2, hours=1))  # past 2/3 of 3 days
    assert sink.writes == 2


def test_is_current(store: DirectoryStore, tmp_path: Path) -> None:
    upkeep = _upkeep(store, tmp_path)
    upkeep.run(NOW)
    files = layout.read_version(tmp_path / "serving")
    state = store.load()
    assert is_current(files, state, NOW)
    assert not is_current(None, state, NOW)
    assert not is_current({**files, layout.KEY: b""}, state, NOW)
    assert not is_current({**files, layout.CA: b"other"}, state, NOW)
    assert not is_current({**files, layout.POLICY: b"{}"}, state, NOW)
    assert not is_current({**files, layout.CERT: b"garbage"}, state, NOW)
    assert not is_current(files, replace(state, tls_profile="modern"), NOW)
    assert not is_current(files, state, NOW + datetime.timedelta(hours=3))
