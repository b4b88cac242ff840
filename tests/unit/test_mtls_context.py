import json
import logging
import pickle
import ssl
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trustme

from harness.waiting import wait_until
from mtls_context import (
    MTLSContext,
    ReloadingContext,
    ReloadingServerContext,
    Side,
    build_context,
    client_context,
    server_context,
)
from mtls_context.groups import set_groups
from mtls_context.gunicorn_hooks import refuse_workers_that_never_reload
from mtls_context.layout import CA, CERT, KEY, POLICY, write_version
from mtls_context.tls_policy import TLSPolicy
from support.certdirs import (
    INTERMEDIATE,
    MODERN,
    Clock,
    Issuer,
    connect,
    files,
    plain_client,
    publish,
    serial_of,
)


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> ssl.SSLObject:
    """A full handshake in memory; the server end. Raises the first side's SSLError."""
    return connect(server, client, name)[0]


def trustme_server(issuer: Issuer, leaf: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    issuer.root.configure_trust(ctx)
    leaf.configure_cert(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def test_server_context_accepts_a_client_of_its_ca(tmp_path: Path, issuer: Issuer) -> None:
    publish(tmp_path, issuer.issue("server.test"), [issuer])
    client = plain_client(issuer, issuer.issue("client.test"))

    s = handshake(server_context(tmp_path), client, "server.test")

    peer = s.getpeercert()
    assert peer is not None
    assert ("DNS", "client.test") in peer["subjectAltName"]


def test_server_context_refuses_a_client_of_another_ca(
    tmp_path: Path, issuer: Issuer, other_issuer: Issuer
) -> None:
    publish(tmp_path, issuer.issue("server.test"), [issuer])
    client = plain_client(issuer, other_issuer.issue("client.test"))

    with pytest.raises(ssl.SSLError):
        handshake(server_context(tmp_path), client, "server.test")


def test_server_context_refuses_a_client_without_a_certificate(
    tmp_path: Path, issuer: Issuer
) -> None:
    publish(tmp_path, issuer.issue("server.test"), [issuer])

    with pytest.raises(ssl.SSLError):
        handshake(server_context(tmp_path), plain_client(issuer, None), "server.test")


def test_client_context_checks_the_server_name(tmp_path: Path, issuer: Issuer) -> None:
    publish(tmp_path, issuer.issue("client.test"), [issuer])
    server = trustme_server(issuer, issuer.issue("server.test"))

    handshake(server, client_context(tmp_path), "server.test")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(server, client_context(tmp_path), "elsewhere.test")


def test_client_context_trusts_only_the_bundle(
    tmp_path: Path, issuer: Issuer, other_issuer: Issuer
) -> None:
    publish(tmp_path, issuer.issue("client.test"), [issuer])
    context = client_context(tmp_path)

    assert context.cert_store_stats()["x509_ca"] == 1
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(trustme_server(other_issuer, other_issuer.issue("s.test")), context, "s.test")


def test_context_reports_the_certificate_it_presents(tmp_path: Path, issuer: Issuer) -> None:
    leaf = issuer.issue("server.test", "alias.test")
    publish(tmp_path, leaf, [issuer])

    certificate = server_context(tmp_path).certificate

    assert (certificate.identity, certificate.serial) == ("server.test", serial_of(leaf))


@pytest.mark.parametrize("side", list(Side))
def test_a_bundle_with_two_roots_accepts_leaves_of_either(
    side: Side, issuer: Issuer, other_issuer: Issuer
) -> None:
    for signer in (issuer, other_issuer):
        build_context(files(signer.issue("a.test"), [issuer, other_issuer]), side)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("key of another certificate", "tls.key does not match the certificate in tls.crt"),
        ("leaf of another CA", "tls.crt does not chain to a root in ca.crt"),
        ("expired leaf", "the certificate has expired"),
        ("no key", "missing or empty: tls.key"),
        ("policy not JSON", "TLS policy is not valid JSON"),
        ("modern at TLS 1.2", "the modern TLS profile needs min_version TLSv1.3"),
        ("unknown profile", "unknown TLS profile 'old'"),
        ("no usable cipher", "No cipher can be selected"),
    ],
)
@pytest.mark.parametrize("side", list(Side))
def test_invalid_sets_are_refused_with_the_reason(
    side: Side, change: str, reason: str, issuer: Issuer, other_issuer: Issuer
) -> None:
    good = files(issuer.issue("a.test"), [issuer], INTERMEDIATE)
    bad = dict(good)
    if change == "key of another certificate":
        bad[KEY] = issuer.issue("b.test").private_key_pem.bytes()
    elif change == "leaf of another CA":
        bad.update({k: v for k, v in files(other_issuer.issue("a.test"), []).items() if k != CA})
    elif change == "expired leaf":
        bad.update(files(issuer.issue("a.test", expired=True), [issuer]))
    elif change == "no key":
        del bad[KEY]
    elif change == "policy not JSON":
        bad[POLICY] = b"{"
    elif change == "modern at TLS 1.2":
        bad[POLICY] = b'{"profile": "modern", "min_version": "TLSv1.2", "ciphers": ""}'
    elif change == "unknown profile":
        bad[POLICY] = b'{"profile": "old"}'
    elif change == "no usable cipher":
        bad[POLICY] = b'{"profile": "intermediate", "min_version": "TLSv1.2", "ciphers": "NOPE"}'

    build_context(good, side)
    with pytest.raises(ValueError, match=reason):
        build_context(bad, side)


def test_intermediate_policy_allows_exactly_the_aead_ecdhe_suites(issuer: Issuer) -> None:
    context = build_context(files(issuer.issue("a.test"), [issuer], INTERMEDIATE), Side.SERVER)

    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == set(INTERMEDIATE["ciphers"].split(":"))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_modern_policy_allows_only_tls13(issuer: Issuer) -> None:
    context = build_context(files(issuer.issue("a.test"), [issuer], MODERN), Side.CLIENT)

    assert context.minimum_version is ssl.TLSVersion.TLSv1_3


def test_unknown_policy_keys_are_ignored(issuer: Issuer) -> None:
    policy = dict(MODERN, future_field="x")

    assert build_context(files(issuer.issue("a.test"), [issuer], policy), Side.CLIENT)


def test_reloader_swaps_in_a_new_context_only_after_the_interval(
    tmp_path: Path, issuer: Issuer
) -> None:
    publish(tmp_path, issuer.issue("v1.test"), [issuer])
    clock = Clock()
    reloading = ReloadingContext(tmp_path, Side.SERVER, check_interval=2.0, clock=clock)
    first = reloading.current()

    publish(tmp_path, issuer.issue("v2.test"), [issuer])
    clock.now += 1.9
    assert reloading.current() is first
    clock.now += 0.2
    second = reloading.current()

    assert second is not first
    assert (first.certificate.identity, second.certificate.identity) == ("v1.test", "v2.test")


def test_reloader_keeps_the_context_when_nothing_changed(tmp_path: Path, issuer: Issuer) -> None:
    leaf = issuer.issue("v1.test")
    publish(tmp_path, leaf, [issuer])
    clock = Clock()
    reloading = ReloadingContext(tmp_path, Side.SERVER, check_interval=1.0, clock=clock)
    first = reloading.current()

    publish(tmp_path, leaf, [issuer])  # same bytes, new version directory
    clock.now += 5

    assert reloading.current() is first


def test_reloader_keeps_the_last_good_context_and_says_why_once(
    tmp_path: Path, issuer: Issuer, other_issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    publish(tmp_path, issuer.issue("good.test"), [issuer])
    clock = Clock()
    reloading = ReloadingContext(tmp_path, Side.SERVER, check_interval=1.0, clock=clock)
    good = reloading.current()

    publish(tmp_path, other_issuer.issue("bad.test"), [issuer])
    with caplog.at_level(logging.WARNING, logger="mtls_context"):
        for _ in range(3):
            clock.now += 1
            assert reloading.current() is good
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        f"keeping {_describe_prefix(good)}: tls.crt does not chain to a root in ca.crt"
    ]

    publish(tmp_path, issuer.issue("fixed.test"), [issuer])
    clock.now += 1
    assert reloading.current().certificate.identity == "fixed.test"


def _describe_prefix(context: ssl.SSLContext) -> str:
    from mtls_context.reloading import _describe

    return _describe(context)  # type: ignore[arg-type]


def test_reloader_follows_a_plain_directory(tmp_path: Path, issuer: Issuer) -> None:
    for name, content in files(issuer.issue("v1.test"), [issuer]).items():
        (tmp_path / name).write_bytes(content)
    clock = Clock()
    reloading = ReloadingContext(tmp_path, Side.CLIENT, check_interval=1.0, clock=clock)

    for name, content in files(issuer.issue("v2.test"), [issuer]).items():
        (tmp_path / f"{name}.new").write_bytes(content)
        (tmp_path / f"{name}.new").rename(tmp_path / name)
    clock.now += 1

    assert reloading.current().certificate.identity == "v2.test"


def test_reloader_refuses_to_start_without_a_valid_set(tmp_path: Path, issuer: Issuer) -> None:
    write_version(tmp_path, {CERT: b"garbage", KEY: b"garbage", CA: issuer.root_pem})

    with pytest.raises(ValueError):
        ReloadingContext(tmp_path, Side.SERVER)


def resumed(server: ssl.SSLContext, client: ssl.SSLContext, session: ssl.SSLSession) -> bool:
    """Offer ``session`` in a new handshake; whether the server resumed it."""
    return bool(connect(server, client, "a.test", session)[1].session_reused)


def ticket(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLSession:
    """A TLS 1.3 session ticket from a full handshake (it arrives with the server's first data)."""
    s, c = connect(server, client, "a.test")
    s.write(b"pong")
    c.read(4)
    assert c.session is not None and c.session.has_ticket
    return c.session


def test_a_server_sends_one_session_ticket_per_connection(tmp_path: Path, issuer: Issuer) -> None:
    """OpenSSL sends two; a client resumes with one, and each costs both sides a session copy."""
    publish(tmp_path / "server", issuer.issue("a.test"), [issuer])
    publish(tmp_path / "client", issuer.issue("c.test"), [issuer])
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = server_context(tmp_path / "server").wrap_bio(to_server, to_client, server_side=True)
    c = client_context(tmp_path / "client").wrap_bio(to_client, to_server, server_hostname="a.test")
    for end in (c, s, c, s):  # ClientHello; server's flight; client's Finished; server done
        try:
            end.do_handshake()
        except ssl.SSLWantReadError:
            pass
    after_handshake = to_client.read()  # what the server sent after the client's Finished

    records = []
    while after_handshake:
        length = int.from_bytes(after_handshake[3:5], "big")
        records.append(after_handshake[0])
        after_handshake = after_handshake[5 + length :]
    assert records == [23]  # one encrypted record: the NewSessionTicket


def test_a_generation_resumes_its_own_tickets_and_no_other(tmp_path: Path, issuer: Issuer) -> None:
    publish(tmp_path / "server", issuer.issue("a.test"), [issuer])
    publish(tmp_path / "client", issuer.issue("c.test"), [issuer])
    clock = Clock()
    reloading = ReloadingContext(tmp_path / "server", Side.SERVER, max_age=3600, clock=clock)
    client = client_context(tmp_path / "client")
    first = reloading.current()
    session = ticket(first, client)
    assert resumed(first, client, session)

    clock.now += 3600  # nothing changed on disk: the timed rebuild alone
    second = reloading.current()

    assert second is not first
    assert not resumed(second, client, session)


def test_a_ticket_does_not_outlive_a_trust_bundle_change(
    tmp_path: Path, issuer: Issuer, other_issuer: Issuer
) -> None:
    publish(tmp_path / "server", issuer.issue("a.test"), [issuer, other_issuer])
    publish(tmp_path / "client", issuer.issue("c.test"), [issuer, other_issuer])
    clock = Clock()
    reloading = ReloadingContext(tmp_path / "server", Side.SERVER, clock=clock)
    client = client_context(tmp_path / "client")
    session = ticket(reloading.current(), client)
    assert resumed(reloading.current(), client, session)

    # The root that signed the client is dropped from the server's bundle.
    publish(tmp_path / "server", other_issuer.issue("a.test"), [other_issuer])
    clock.now += 1

    with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED|UNKNOWN_CA"):
        resumed(reloading.current(), client, session)


def test_background_checks_never_build_in_the_caller(
    tmp_path: Path, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(tmp_path, issuer.issue("v1.test"), [issuer])
    reloading = ReloadingContext(tmp_path, Side.SERVER, check_interval=0, background=True)
    builders: list[str] = []
    building = threading.Event()
    release = threading.Event()

    def recording(*args: Any, **kwargs: Any) -> MTLSContext:
        builders.append(threading.current_thread().name)
        building.set()
        release.wait(20)  # held until the caller has seen that it is not kept waiting
        return build_context(*args, **kwargs)

    monkeypatch.setattr("mtls_context.reloading.build_context", recording)
    first = reloading.current()  # starts the watcher
    publish(tmp_path, issuer.issue("v2.test"), [issuer])

    wait_until("the watcher to build", building.is_set, 20, 0.01)
    assert reloading.current() is first  # returns at once while the build runs elsewhere
    release.set()
    wait_until("the new context", lambda: reloading.current() is not first, 20, 0.01)
    assert reloading.current().certificate.identity == "v2.test"
    assert builders and threading.current_thread().name not in builders


def test_optional_mode_verifies_a_certificate_only_when_one_is_sent(
    tmp_path: Path, issuer: Issuer, other_issuer: Issuer
) -> None:
    server = server_context(publish_dir(tmp_path / "s", issuer, "a.test"), verify="optional")
    assert server.verify_mode is ssl.CERT_OPTIONAL

    anonymous = handshake(server, plain_client(issuer, None), "a.test")
    assert anonymous.getpeercert() is None
    with pytest.raises(ssl.SSLError):
        handshake(server, plain_client(issuer, other_issuer.issue("c.test")), "a.test")


def publish_dir(directory: Path, issuer: Issuer, name: str) -> Path:
    publish(directory, issuer.issue(name), [issuer])
    return directory


@pytest.mark.parametrize("group", ["X448", "P-521", "ffdhe2048"])
def test_groups_outside_the_policy_are_refused(tmp_path: Path, issuer: Issuer, group: str) -> None:
    server = server_context(publish_dir(tmp_path, issuer, "a.test"))
    client = plain_client(issuer, issuer.issue("c.test"))
    set_groups(client, group)

    with pytest.raises(ssl.SSLError):
        handshake(server, client, "a.test")


@pytest.mark.parametrize("group", ["X25519", "P-256", "P-384"])
def test_groups_in_the_policy_are_accepted(tmp_path: Path, issuer: Issuer, group: str) -> None:
    server = server_context(publish_dir(tmp_path, issuer, "a.test"))
    client = plain_client(issuer, issuer.issue("c.test"))
    set_groups(client, group)

    handshake(server, client, "a.test")


def test_the_server_context_pickles_as_its_directory(tmp_path: Path, issuer: Issuer) -> None:
    proxy = ReloadingServerContext(publish_dir(tmp_path, issuer, "a.test"), check_interval=3)

    copy = pickle.loads(pickle.dumps(proxy))

    assert isinstance(copy, ReloadingServerContext)
    assert copy.current() is not proxy.current()
    assert copy.current().certificate == proxy.current().certificate


@pytest.mark.parametrize("name", ["intermediate", "modern"])
def test_a_profile_reads_back_from_its_own_document(name: str) -> None:
    profile = TLSPolicy.named(name)

    assert TLSPolicy.from_json(json.dumps(profile.document()).encode()) == profile


def test_a_subclass_of_a_worker_class_that_reloads_reloads_too() -> None:
    from gunicorn.workers.gthread import ThreadWorker

    class Mine(ThreadWorker):  # type: ignore[misc]
        pass

    class Stuck:  # a worker of its own making, which gunicorn's ssl_context hook never reaches
        pass

    refuse_workers_that_never_reload(SimpleNamespace(cfg=SimpleNamespace(worker_class=Mine)))
    with pytest.raises(RuntimeError, match="never calls gunicorn's ssl_context hook"):
        refuse_workers_that_never_reload(SimpleNamespace(cfg=SimpleNamespace(worker_class=Stuck)))
