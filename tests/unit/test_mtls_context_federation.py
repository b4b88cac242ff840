"""Peers of a federated trust domain: accepted only when allowed, each checked against its own
trust domain's bundle; a foreign root vouching for our trust domain's IDs is refused."""

from __future__ import annotations

import datetime
import logging
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from mtls_context import Side, build_context, federation
from mtls_context.federation import check_pattern, matches, subject_alt_names
from mtls_context.identity import allowed, dns_names, identity
from mtls_context.layout import CERT, KEY, federated_bundle, read_version, write_version
from mtls_context.reloading import ReloadingContext
from support.certdirs import connect
from support.trust_domains import OTHER, OURS, TrustDomain, bundles

SHOP = "spiffe://other.example/ns/shop/*"


@pytest.fixture(autouse=True)
def one_trust_domain_per_process() -> Iterator[None]:
    """These tests build contexts of both trust domains in one process; a pod holds one. What a
    test federates is forgotten after it, so other tests see a process that federates nothing."""
    yield
    federation._federated.clear()


@pytest.fixture(scope="module")
def ours() -> TrustDomain:
    return TrustDomain(OURS)


@pytest.fixture(scope="module")
def other() -> TrustDomain:
    return TrustDomain(OTHER)


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, name: str = "server.test"
) -> ssl.SSLObject:
    """A full handshake in memory and one message; the server end."""
    return connect(server, client, name)[0]


def server(files: Mapping[str, bytes], *peers: str) -> ssl.SSLContext:
    return build_context(files, Side.SERVER, peers=peers)


def client(files: Mapping[str, bytes], *peers: str) -> ssl.SSLContext:
    return build_context(files, Side.CLIENT, peers=peers)


def attacker(files: Mapping[str, bytes]) -> ssl.SSLContext:
    """A stdlib client that presents ``files``' certificate and does not check the server."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with tempfile.TemporaryDirectory() as private:
        chain = Path(private, "chain.pem")
        chain.write_bytes(files[CERT] + files[KEY])
        context.load_cert_chain(chain)
    return context


@pytest.fixture()
def our_server(ours: TrustDomain, other: TrustDomain) -> dict[str, bytes]:
    return ours.files(ours.id("ns/default/sa/hello"), "server.test", federated=[other])


def a_client_of_theirs(other: TrustDomain, ours: TrustDomain, path: str) -> ssl.SSLContext:
    """A client of other.example that pins our server's SPIFFE ID."""
    files = other.files(other.id(path), federated=[ours])
    return client(files, ours.id("ns/default/sa/hello"))


def test_a_server_accepts_an_allowed_peer_of_a_federated_trust_domain(
    our_server: dict[str, bytes], ours: TrustDomain, other: TrustDomain
) -> None:
    handshake(server(our_server, SHOP), a_client_of_theirs(other, ours, "ns/shop/sa/web"))


def test_without_federation_a_peer_of_another_trust_domain_is_refused(
    our_server: dict[str, bytes], ours: TrustDomain, other: TrustDomain
) -> None:
    with pytest.raises(ssl.SSLError):
        handshake(server(our_server), a_client_of_theirs(other, ours, "ns/shop/sa/web"))


def test_a_peer_of_a_federated_trust_domain_not_allowed_is_refused(
    our_server: dict[str, bytes],
    ours: TrustDomain,
    other: TrustDomain,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "mtls_context")
    with pytest.raises(ssl.SSLError, match="application verification failure"):
        handshake(server(our_server, SHOP), a_client_of_theirs(other, ours, "ns/admin/sa/root"))
    assert "spiffe://other.example/ns/admin/sa/root is not allowed" in caplog.text


@pytest.mark.parametrize(
    "allowed",
    [(SHOP,), (SHOP, "spiffe://ours.example/*"), ("spiffe://other.example/*",)],
)
def test_a_foreign_root_vouching_for_our_trust_domain_is_refused(
    our_server: dict[str, bytes],
    ours: TrustDomain,
    other: TrustDomain,
    allowed: tuple[str, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # other.example's CA signs a leaf that claims one of OUR workloads.
    forged = other.files(ours.id("ns/shop/sa/web"))
    caplog.set_level(logging.INFO, "mtls_context")
    with pytest.raises(ssl.SSLError, match="application verification failure"):
        handshake(server(our_server, *allowed), attacker(forged))
    assert "vouches for spiffe://ours.example/ns/shop/sa/web of another trust domain" in caplog.text


def test_a_foreign_peer_is_named_by_its_spiffe_id_never_by_a_dns_name(
    our_server: dict[str, bytes], ours: TrustDomain, other: TrustDomain
) -> None:
    files = other.files(other.id("ns/shop/sa/web"), "admin.default.svc", federated=[ours])
    end = handshake(server(our_server, SHOP), client(files, ours.id("ns/default/sa/hello")))
    peer = end.getpeercert()
    assert peer and dns_names(peer) == ["admin.default.svc"]
    assert identity(peer) == other.id("ns/shop/sa/web")
    assert not allowed(peer, ["admin.default.svc"])
    assert allowed(peer, [SHOP]) and allowed(peer, [other.id("ns/shop/sa/web")])
    # A trust domain no context of this process federates is not foreign (ours, in a pod).
    local = {"subjectAltName": (("DNS", "admin.default.svc"), ("URI", "spiffe://local/ns/a"))}
    assert identity(local) == "admin.default.svc" and allowed(local, ["admin.default.svc"])


def test_our_ca_may_not_vouch_for_a_federated_trust_domain(
    our_server: dict[str, bytes], ours: TrustDomain, other: TrustDomain
) -> None:
    forged = ours.files(other.id("ns/shop/sa/web"))
    with pytest.raises(ssl.SSLError, match="application verification failure"):
        handshake(server(our_server, SHOP), attacker(forged))


def test_our_own_clients_are_accepted_as_before(
    our_server: dict[str, bytes], ours: TrustDomain
) -> None:
    handshake(server(our_server, SHOP), client(ours.files(ours.id("ns/default/sa/web"))))


def test_a_federated_peer_is_accepted_when_our_crl_is_enforced(
    ours: TrustDomain, other: TrustDomain
) -> None:
    files = ours.files(ours.id("ns/default/sa/hello"), "server.test", federated=[other], crl=True)
    context = server(files, SHOP)
    assert context.crl.pem is not None  # type: ignore[attr-defined]
    handshake(context, a_client_of_theirs(other, ours, "ns/shop/sa/web"))
    handshake(context, client(ours.files(ours.id("ns/default/sa/web"))))


def test_a_client_pins_the_server_identity_instead_of_its_name(
    our_server: dict[str, bytes], ours: TrustDomain
) -> None:
    mine = ours.files(ours.id("ns/default/sa/web"))
    handshake(server(our_server), client(mine, ours.id("ns/default/sa/hello")), "any.name")
    handshake(server(our_server), client(mine, "spiffe://ours.example/ns/default/*"), "any.name")
    with pytest.raises(ssl.SSLError, match="application verification failure"):
        handshake(server(our_server), client(mine, ours.id("ns/default/sa/other")))


def test_a_client_pinned_to_a_federated_server(ours: TrustDomain, other: TrustDomain) -> None:
    theirs = server(
        other.files(other.id("ns/shop/sa/api"), federated=[ours]), "spiffe://ours.example/*"
    )
    mine = ours.files(ours.id("ns/default/sa/web"), federated=[other])
    handshake(theirs, client(mine, other.id("ns/shop/sa/api")))
    with pytest.raises(ssl.SSLError):  # not pinned: only our CA is trusted
        handshake(theirs, client(mine), "server.test")
    impostor = other.files(other.id("ns/shop/sa/other"), federated=[ours])
    with pytest.raises(ssl.SSLError, match="application verification failure"):
        handshake(
            server(impostor, "spiffe://ours.example/*"), client(mine, other.id("ns/shop/sa/api"))
        )


def test_the_bundles_follow_the_directory(
    tmp_path: Path,
    our_server: dict[str, bytes],
    ours: TrustDomain,
    other: TrustDomain,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alone = {name: data for name, data in our_server.items() if name.startswith(("tls", "ca"))}
    write_version(tmp_path, alone)
    reloading = ReloadingContext(tmp_path, Side.SERVER, check_interval=0, peers=[SHOP])
    assert "no bundle of other.example beside ca.crt: its peers are refused" in caplog.text
    web = a_client_of_theirs(other, ours, "ns/shop/sa/web")
    with pytest.raises(ssl.SSLError):
        handshake(reloading.current(), web)
    write_version(tmp_path, {**alone, **bundles([other])})
    handshake(reloading.current(), web)
    assert reloading.status().generation == 2
    write_version(tmp_path, alone)  # de-federated: new handshakes are refused
    with pytest.raises(ssl.SSLError):
        handshake(reloading.current(), web)


def test_the_bundle_files_are_read_with_their_version(tmp_path: Path, other: TrustDomain) -> None:
    write_version(tmp_path, {"ca.crt": b"x", **bundles([other]), "federated-.crt": b"y"})
    assert read_version(tmp_path) == {"ca.crt": b"x", federated_bundle(OTHER): other.root_pem}


def test_a_malformed_pattern_is_refused(our_server: dict[str, bytes]) -> None:
    for pattern, why in [
        ("https://other.example/x", "is not a SPIFFE ID"),
        ("spiffe://Other.Example/x", "is not"),
        ("spiffe://other.example", "end it with /*"),
        ("spiffe://other.example/ns/*/sa/x", "'*' only as the last"),
    ]:
        with pytest.raises(ValueError, match=why):
            check_pattern(pattern)
        with pytest.raises(ValueError, match=why):
            server(our_server, pattern)


def test_patterns_match_whole_path_segments() -> None:
    assert matches(SHOP, "spiffe://other.example/ns/shop/sa/web")
    assert not matches(SHOP, "spiffe://other.example/ns/shopping/sa/web")
    assert not matches(SHOP, "spiffe://other.example/ns/shop/")
    assert matches("spiffe://other.example/*", "spiffe://other.example/a")
    assert not matches("spiffe://other.example/*", "spiffe://other.example.evil/a")
    assert matches("spiffe://o/a", "spiffe://o/a") and not matches("spiffe://o/a", "spiffe://o/ab")


def test_subject_alt_names_reads_uris_and_dns_names(other: TrustDomain) -> None:
    hour = datetime.timedelta(hours=1)
    issued = other.ca.issue("a.test", "b.test", uris=[other.id("x")], valid_for=hour)
    der = issued.certificate.public_bytes(Encoding.DER)
    assert subject_alt_names(der) == ([other.id("x")], ["a.test", "b.test"])
