"""``ca.crl`` in the TLS library: enforced when sound, dropped (and said so) when stale, late or
partial (`mtls_context.revocation`), checked in real handshakes over memory."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.waiting import wait_until
from mtls_context import ReloadingContext, Side, build_context
from mtls_context.layout import CERT, CRL
from mtls_context.revocation import STALE_MARGIN, decide
from mtls_context.status import Status
from support.certdirs import Issuer, crl, files, publish

DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> None:
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = server.wrap_bio(to_server, to_client, server_side=True)
    c = client.wrap_bio(to_client, to_server, server_side=False, server_hostname="localhost")
    for _ in range(10):
        for end in (c, s):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
        try:
            c.write(b"x")  # TLS 1.3: the server's verdict on the client comes after its Finished
            s.read(1)
            return
        except ssl.SSLWantReadError:
            continue


def test_no_crl_is_not_stale(issuer: Issuer) -> None:
    chain = files(issuer.issue("a.test"), [issuer])[CERT]
    assert decide(None, chain).pem is None and decide(None, chain).stale is None


def test_a_sound_crl_is_enforced_until_near_its_next_update(issuer: Issuer) -> None:
    chain = files(issuer.issue("a.test"), [issuer])[CERT]
    published = crl(issuer)
    decision = decide(published, chain)
    assert decision.pem == published and decision.stale is None
    assert decision.drop_at is not None
    near = decision.drop_at + STALE_MARGIN - datetime.timedelta(hours=1)
    assert decide(published, chain, now=near).stale is not None


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: crl(i, age=8 * DAY), "ca.crl is stale"),
        (lambda i: crl(i, age=-DAY), "not valid yet"),
        (lambda i: crl(Issuer()), "no CRL of this certificate's issuer"),
        (lambda i: b"-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n", "does not parse"),
        (lambda i: b"not a crl at all", "holds no CRL"),
    ],
)
def test_a_stale_late_partial_or_broken_crl_is_dropped(
    issuer: Issuer, make: Callable[[Issuer], bytes], reason: str
) -> None:
    leaf = issuer.issue("a.test")
    decision = decide(make(issuer), files(leaf, [issuer])[CERT])
    assert decision.pem is None and reason in (decision.stale or "")
    # The context builds and says why it does not check revocation.
    context = build_context({**files(leaf, [issuer]), CRL: make(issuer)}, Side.SERVER)
    assert context.crl.pem is None and reason in (context.crl.stale or "")


def test_a_server_refuses_a_revoked_client_and_serves_another(issuer: Issuer) -> None:
    revoked, kept = issuer.issue("client.test"), issuer.issue("client.test")
    server_files = {**files(issuer.issue("localhost"), [issuer]), CRL: crl(issuer, [revoked])}
    server = build_context(server_files, Side.SERVER)
    assert server.crl.pem is not None and server.crl.stale is None
    _handshake(server, build_context(files(kept, [issuer]), Side.CLIENT))
    with pytest.raises(ssl.SSLError):
        _handshake(server, build_context(files(revoked, [issuer]), Side.CLIENT))


def test_a_client_refuses_a_revoked_server(issuer: Issuer) -> None:
    server_leaf = issuer.issue("localhost")
    server = build_context(files(server_leaf, [issuer]), Side.SERVER)
    client_files = {**files(issuer.issue("client.test"), [issuer]), CRL: crl(issuer, [server_leaf])}
    with pytest.raises(ssl.SSLError, match="revoked"):
        _handshake(server, build_context(client_files, Side.CLIENT))


def test_a_revoked_own_certificate_is_refused_as_a_reload(issuer: Issuer) -> None:
    leaf = issuer.issue("localhost")
    with pytest.raises(ValueError, match="the certificate in tls.crt is revoked"):
        build_context({**files(leaf, [issuer]), CRL: crl(issuer, [leaf])}, Side.SERVER)


def test_the_status_says_whether_the_crl_is_enforced() -> None:
    now = datetime.datetime.now(datetime.UTC)
    status = Status("d", "server", 1, "a", "1", now, 1, now, None, None, False, "ca.crl is stale")
    assert Status.from_json(status.to_json()) == status
    assert status.to_json()["crl_stale"] == "ca.crl is stale"


def test_a_reloading_context_drops_its_crl_when_it_grows_stale(
    issuer: Issuer, tmp_path: Path
) -> None:
    soon = crl(
        issuer, valid_for=STALE_MARGIN + datetime.timedelta(seconds=2), age=datetime.timedelta(0)
    )
    publish(tmp_path, issuer.issue("localhost"), [issuer], crl=soon)
    reloading = ReloadingContext(tmp_path, Side.SERVER, check_interval=0)
    assert reloading.status().crl_enforced and reloading.status().crl_stale is None
    wait_until("the CRL to be dropped", lambda: reloading.current().crl.pem is None, 30, 0.1)
    assert not reloading.status().crl_enforced
    assert "ca.crl is stale" in (reloading.status().crl_stale or "")
