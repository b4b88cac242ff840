"""Every server stack given one `ReloadingServerContext`, as real processes on 127.0.0.1: the
recipes of ``examples/``, run as a user runs them (``harness.example_servers``).

Per stack: a hello; the refusals (no client certificate, a foreign CA, TLS 1.1, a suite and a
group outside the policy); the CA's TLS policy (modern) takes effect; a resumption across a
trust-bundle change fails; ten leaf rotations and a full root rotation under load without one
failed request; a new certificate served on new connections (how soon is printed, not asserted).
"""

from __future__ import annotations

import datetime
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from harness.example_servers import HELLO, STACKS, argv, env
from harness.processes import free_port, running
from harness.waiting import elapsed_until, wait_until
from mtls_context import ReloadingContext, Side, client_context
from mtls_context.groups import set_groups
from support.certdirs import MODERN, Issuer, crl, plain_client, publish, serial_of
from support.https_get import get

CHECK_INTERVAL = 0.5
BOUND = 60  # seconds for a server or client to take a new version, on a loaded machine too
POLL = 0.05
TLS = ssl.TLSVersion


@dataclass
class Server:
    stack: str
    port: int
    directory: Path
    issuer: Issuer
    leaf: trustme.LeafCert
    log: Path
    client_dir: Path = field(init=False)


@pytest.fixture(scope="module", params=STACKS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    stack = request.param
    work = tmp_path_factory.mktemp(stack)
    issuer = Issuer()
    leaf = issuer.issue("localhost")
    publish(work / "server", leaf, [issuer])
    port = free_port()
    log = work / "server.log"
    variables = env(port, work / "server", CHECK_INTERVAL, allow=["client.test"])
    with running(argv(stack, port), log, env=variables) as proc:
        result = Server(stack, port, work / "server", issuer, leaf, log)
        result.client_dir = work / "client"
        publish(result.client_dir, issuer.issue("client.test"), [issuer])
        _wait_until_serving(result, proc)
        yield result


def _wait_until_serving(server: Server, proc: subprocess.Popen[bytes]) -> None:
    def serving() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{server.stack} exited {proc.returncode}:\n{server.log.read_text()}"
            )
        get(server.port, client_context(server.client_dir))
        return True

    try:
        wait_until(f"{server.stack} to serve", serving, 60, interval=0.2, retry_on=(OSError,))
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}:\n{server.log.read_text()}") from None


def _wait_until_served(server: Server, context: ssl.SSLContext, serial: str) -> None:
    """Until a new connection made with ``context`` gets the certificate ``serial``: the server
    runs that version (refused or unverified: it still runs an earlier one)."""
    wait_until(
        f"{server.stack} to serve serial {serial}",
        lambda: get(server.port, context).serial == serial,
        BOUND,
        interval=POLL,
        retry_on=(OSError,),
    )


def _refused(port: int, context: ssl.SSLContext) -> bool:
    try:
        get(port, context)
    except (ssl.SSLError, ConnectionError):
        return True
    return False


def test_hello(server: Server) -> None:
    reply = get(server.port, client_context(server.client_dir))

    assert reply.response.startswith("HTTP/1.1 200")
    assert reply.response.endswith(HELLO[server.stack])
    assert reply.serial == serial_of(server.leaf)


@pytest.mark.parametrize("server", ["aiohttp", "uvicorn"], indirect=True)
def test_handlers_get_the_peer_identity_and_an_allow_list(server: Server) -> None:
    allowed = get(server.port, client_context(server.client_dir), path="/whoami")
    other = plain_client(server.issuer, server.issuer.issue("intruder.test"))
    refused = get(server.port, other, path="/whoami")

    assert allowed.response.startswith("HTTP/1.1 200")
    assert allowed.response.endswith("\r\n\r\nclient.test\n")
    assert refused.response.startswith("HTTP/1.1 403")
    assert "intruder.test is not on this server's allow-list" in refused.response


def test_no_client_certificate_is_refused(server: Server) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(server.port, plain_client(server.issuer, None))


def test_a_client_of_a_foreign_ca_is_refused(server: Server) -> None:
    foreign = Issuer()
    context = plain_client(server.issuer, foreign.issue("client.test"))

    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(server.port, context)


def test_tls_11_is_refused(server: Server) -> None:
    context = plain_client(server.issuer, server.issuer.issue("client.test"))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = TLS.TLSv1_1

    with pytest.raises(ssl.SSLError):
        get(server.port, context)


def test_a_suite_outside_the_policy_is_refused(server: Server) -> None:
    context = plain_client(server.issuer, server.issuer.issue("client.test"))
    context.maximum_version = TLS.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-SHA256")  # CBC: not in Mozilla intermediate

    with pytest.raises((ssl.SSLError, ConnectionError)):  # asyncio closes without an alert
        get(server.port, context)
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert get(server.port, context).response.startswith("HTTP/1.1 200")


@pytest.mark.parametrize("group", ["X448", "P-521"])
def test_a_group_outside_the_policy_is_refused(server: Server, group: str) -> None:
    context = plain_client(server.issuer, server.issuer.issue("client.test"))
    set_groups(context, group)

    with pytest.raises(ssl.SSLError):
        get(server.port, context)
    set_groups(context, "X25519")
    assert get(server.port, context).response.startswith("HTTP/1.1 200")


def test_the_policy_from_the_ca_is_what_the_stack_applies(server: Server) -> None:
    tls12 = plain_client(server.issuer, server.issuer.issue("client.test"))
    tls12.maximum_version = TLS.TLSv1_2
    assert get(server.port, tls12).response.startswith("HTTP/1.1 200")

    try:
        publish(server.directory, server.leaf, [server.issuer], MODERN)

        wait_until(
            f"{server.stack} to refuse TLS 1.2 (policy modern)",
            lambda: _refused(server.port, tls12),
            BOUND,
            interval=POLL,
            retry_on=(),
        )
    finally:
        publish(server.directory, server.leaf, [server.issuer])
        reply = wait_until(
            f"{server.stack} to accept TLS 1.2 again (policy intermediate)",
            lambda: get(server.port, tls12),
            BOUND,
            interval=POLL,
            retry_on=(ssl.SSLError, ConnectionError),
        )
    assert reply.response.startswith("HTTP/1.1 200")


def test_a_resumption_across_a_trust_bundle_change_fails(server: Server) -> None:
    other = Issuer()
    client = plain_client(server.issuer, server.issuer.issue("client.test"))
    other.root.configure_trust(client)
    session = get(server.port, client).session
    assert session is not None and session.has_ticket
    assert get(server.port, client, session).resumed

    leaf = other.issue("localhost")
    try:
        publish(server.directory, leaf, [other])  # client's root dropped
        _wait_until_served(server, plain_client(other, other.issue("client.test")), serial_of(leaf))

        with pytest.raises((ssl.SSLError, ConnectionError)):
            get(server.port, client, session)
    finally:
        publish(server.directory, server.leaf, [server.issuer])
        _wait_until_served(server, client_context(server.client_dir), serial_of(server.leaf))


def test_a_new_certificate_is_served_on_new_connections(server: Server) -> None:
    client = client_context(server.client_dir)
    leaf = server.issuer.issue("localhost")
    want = serial_of(leaf)
    publish(server.directory, leaf, [server.issuer])

    elapsed = elapsed_until(
        f"{server.stack} to serve serial {want}",
        lambda: get(server.port, client).serial == want,
        BOUND,
        interval=0.02,
    )
    # The target is the check interval plus reading and validating the files; a loaded machine
    # takes longer, so the figure is reported, not asserted.
    print(
        f"{server.stack}: new certificate served after {elapsed:.3f} s"
        f" (check interval {CHECK_INTERVAL} s)"
    )


class Load:
    """Threads making new connections through a reloading client context until stopped."""

    def __init__(self, port: int, client_dir: Path, threads: int = 4) -> None:
        self.contexts = ReloadingContext(client_dir, Side.CLIENT, check_interval=CHECK_INTERVAL)
        self.port, self.ok, self.failures = port, 0, []  # type: ignore[var-annotated]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                response = get(self.port, self.contexts.current()).response
                good = response.startswith("HTTP/1.1 200")
            except OSError as e:
                good, response = False, repr(e)
            with self.lock:
                if good:
                    self.ok += 1
                else:
                    self.failures.append(response)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def _wait_until_presented(load: Load, serial: str) -> None:
    wait_until(
        f"the load's client context to present serial {serial}",
        lambda: load.contexts.current().certificate.serial == serial,
        BOUND,
        interval=POLL,
        retry_on=(),
    )


def test_rotations_under_load_fail_no_request(server: Server) -> None:
    new_root = Issuer()
    server_dir, client_dir = server.directory, server.client_dir
    with Load(server.port, client_dir) as load:
        for _ in range(10):
            publish(server_dir, server.issuer.issue("localhost"), [server.issuer])
            publish(client_dir, server.issuer.issue("client.test"), [server.issuer])
            time.sleep(CHECK_INTERVAL / 2)
        both = [server.issuer, new_root]  # the root rotation, in overlapping steps
        for issuer, trusted in ((server.issuer, both), (new_root, both), (new_root, [new_root])):
            leaf, client_leaf = issuer.issue("localhost"), issuer.issue("client.test")
            publish(server_dir, leaf, trusted)
            publish(client_dir, client_leaf, trusted)
            # The next step is safe only once both sides run this one.
            prober = plain_client(issuer, issuer.issue("client.test"))
            _wait_until_served(server, prober, serial_of(leaf))
            _wait_until_presented(load, serial_of(client_leaf))
    try:
        print(f"{server.stack}: {load.ok} requests during the rotations")
        assert load.failures == []
        assert load.ok > 50
        assert get(server.port, client_context(client_dir)).response.startswith("HTTP/1.1 200")
    finally:
        publish(server_dir, server.leaf, [server.issuer])
        publish(client_dir, server.issuer.issue("client.test"), [server.issuer])
        _wait_until_served(server, client_context(client_dir), serial_of(server.leaf))


def test_a_revoked_client_is_refused_and_a_late_crl_takes_no_traffic_down(server: Server) -> None:
    # Issue 23: ca.crl beside ca.crt is enforced; a stale or partial one is dropped, not obeyed.
    issuer, good = server.issuer, client_context(server.client_dir)
    revoked = plain_client(issuer, revoked_leaf := issuer.issue("client.test"))
    other = plain_client(issuer, issuer.issue("client.test"))
    stale = crl(issuer, [revoked_leaf], age=datetime.timedelta(days=8))
    of_another_issuer = crl(Issuer(), [revoked_leaf])
    for published, enforced in (
        (crl(issuer, [revoked_leaf]), True),
        (stale, False),
        (of_another_issuer, False),
    ):
        leaf = issuer.issue("localhost")
        publish(server.directory, leaf, [issuer], crl=published)
        _wait_until_served(server, good, serial_of(leaf))
        assert _refused(server.port, revoked) is enforced
        for served in (good, other):
            assert get(server.port, served).response.startswith("HTTP/1.1 200")
