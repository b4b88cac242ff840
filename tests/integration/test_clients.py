"""The client adapters against a real server process on 127.0.0.1 (the asyncio recipe of
``examples/``).

Per client: a hello with its certificate; a server of a foreign CA is refused, and so is one
outside the policy (TLS 1.1, a CBC suite, X448, P-521); a renewed client certificate is
presented on new connections; a root rotation under load fails no request; a response in
flight when the context changes finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trustme

from harness import example_servers
from harness.processes import free_port, running
from harness.waiting import wait_until
from mtls_context import httpx_transport, requests_adapter
from mtls_context.aiohttp_client import MTLSClientSession
from mtls_context.groups import set_groups
from support.certdirs import MODERN, Issuer, crl, plain_client, publish, serial_of
from support.https_get import get as https_get

CHECK_INTERVAL = 0.3
BOUND = 60  # seconds for a server or client to take a new version, on a loaded machine too
POLL = 0.05
LOAD_PER_STEP = CHECK_INTERVAL * 4  # requests on each rotation step, however soon it is taken


@dataclass
class Server:
    url: str
    directory: Path
    client_dir: Path
    issuer: Issuer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("clients")
    issuer = Issuer()
    publish(work / "server", issuer.issue("localhost"), [issuer])
    publish(work / "client", issuer.issue("client.test"), [issuer])
    port = free_port()
    variables = example_servers.env(port, work / "server", CHECK_INTERVAL)
    with running(example_servers.argv("asyncio", port), work / "server.log", env=variables):
        result = Server(f"https://localhost:{port}/", work / "server", work / "client", issuer)

        def answers() -> bool:
            with httpx_transport.client(result.client_dir) as c:
                c.get(result.url)
            return True

        wait_until(
            "the server to answer", answers, 60, interval=0.2, retry_on=(httpx.ConnectError,)
        )
        yield result


Get = Callable[[], httpx.Response]


@contextlib.contextmanager
def sync_get(server: Server) -> Iterator[Get]:
    with httpx_transport.client(server.client_dir, check_interval=CHECK_INTERVAL) as c:
        yield lambda: c.get(server.url)


@contextlib.contextmanager
def async_get(server: Server) -> Iterator[Get]:
    loop = asyncio.new_event_loop()
    c = httpx_transport.async_client(server.client_dir, check_interval=CHECK_INTERVAL)
    try:
        yield lambda: loop.run_until_complete(c.get(server.url))
    finally:
        loop.run_until_complete(c.aclose())
        loop.close()


@contextlib.contextmanager
def aiohttp_get(server: Server) -> Iterator[Get]:
    loop = asyncio.new_event_loop()

    async def start() -> MTLSClientSession:
        return MTLSClientSession(server.client_dir, check_interval=CHECK_INTERVAL)

    session = loop.run_until_complete(start())

    async def get() -> httpx.Response:  # the same view of a response as the httpx clients'
        async with session.get(server.url) as r:
            return httpx.Response(r.status, headers=dict(r.headers), content=await r.read())

    try:
        yield lambda: loop.run_until_complete(get())
    finally:
        loop.run_until_complete(session.close())
        loop.close()


@contextlib.contextmanager
def requests_get(server: Server) -> Iterator[Get]:
    with requests_adapter.session(server.client_dir, check_interval=CHECK_INTERVAL) as s:

        def get() -> httpx.Response:
            r = s.get(server.url, timeout=10)
            return httpx.Response(r.status_code, headers=dict(r.headers), content=r.content)

        yield get


CLIENTS = {
    "httpx": sync_get,
    "httpx-async": async_get,
    "aiohttp": aiohttp_get,
    "requests": requests_get,
}


@pytest.fixture(params=CLIENTS)
def get(request: pytest.FixtureRequest, server: Server) -> Iterator[Get]:
    with CLIENTS[request.param](server) as get:
        yield get


def test_hello_presents_the_client_certificate(server: Server, get: Get) -> None:
    response = get()

    assert response.status_code == 200
    assert response.text == "hello from asyncio\n"
    assert response.headers["x-client-serial"] == serial_of_dir(server.client_dir)


def serial_of_dir(directory: Path) -> str:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
    return format(cert.serial_number, "x")


def served_serial(server: Server, context: ssl.SSLContext) -> str | None:
    """The serial of the certificate the server presents to ``context``; None while it refuses
    ``context`` or is not trusted by it (it still runs an earlier version)."""
    port = urlsplit(server.url).port
    assert port is not None
    try:
        return https_get(port, context).serial
    except OSError:
        return None


def wait_until_presented(get: Get, serial: str) -> None:
    """Until the client presents the certificate ``serial`` (the server says which it got)."""
    wait_until(
        f"the client to present serial {serial}",
        lambda: get().headers["x-client-serial"] == serial,
        BOUND,
        interval=POLL,
        retry_on=(),
    )


def test_a_server_of_a_foreign_ca_is_refused(server: Server, tmp_path: Path) -> None:
    foreign = Issuer()
    publish(tmp_path, foreign.issue("client.test"), [foreign])
    for make in (httpx_transport.client,):
        with (
            make(tmp_path) as c,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            c.get(server.url)


def test_a_renewed_client_certificate_is_presented(server: Server, get: Get) -> None:
    assert get().status_code == 200
    leaf = server.issuer.issue("client.test")
    publish(server.client_dir, leaf, [server.issuer])

    wait_until_presented(get, serial_of(leaf))


def test_a_root_rotation_under_load_fails_no_request(server: Server, get: Get) -> None:
    new_root = Issuer()
    both = [server.issuer, new_root]
    steps = [(server.issuer, both), (new_root, both), (new_root, [new_root])]
    statuses: list[int] = []
    try:
        for issuer, trusted in steps:
            rotation_step(server, get, issuer, trusted, statuses)
        assert set(statuses) == {200} and len(statuses) > 20
    finally:
        leaf = server.issuer.issue("localhost")
        publish(server.directory, leaf, [server.issuer])
        publish(server.client_dir, server.issuer.issue("client.test"), [server.issuer])
        prober = plain_client(server.issuer, server.issuer.issue("client.test"))
        wait_until(
            f"the server to serve serial {serial_of(leaf)}",
            lambda: served_serial(server, prober) == serial_of(leaf),
            BOUND,
            interval=POLL,
            retry_on=(),
        )


def rotation_step(
    server: Server, get: Get, issuer: Issuer, trusted: list[Issuer], statuses: list[int]
) -> None:
    """Publish one step to both sides and make requests, for at least ``LOAD_PER_STEP``, until
    both run it: the next step is safe only then."""
    leaf, client_leaf = issuer.issue("localhost"), issuer.issue("client.test")
    publish(server.directory, leaf, trusted)
    publish(server.client_dir, client_leaf, trusted)
    prober = plain_client(issuer, issuer.issue("client.test"))
    server_serial, client_serial = serial_of(leaf), serial_of(client_leaf)
    loaded = time.monotonic() + LOAD_PER_STEP

    def taken() -> bool:
        response = get()
        statuses.append(response.status_code)
        return (
            time.monotonic() >= loaded
            and response.headers.get("x-client-serial") == client_serial
            and served_serial(server, prober) == server_serial
        )

    wait_until(
        f"both sides to run serials {server_serial} and {client_serial}",
        taken,
        BOUND,
        interval=0,
        retry_on=(),
    )


def test_a_response_in_flight_finishes_on_the_old_context(server: Server) -> None:
    before = serial_of_dir(server.client_dir)
    with httpx_transport.client(server.client_dir, check_interval=CHECK_INTERVAL) as c:
        with c.stream("GET", server.url) as in_flight:
            leaf = server.issuer.issue("client.test")
            publish(server.client_dir, leaf, [server.issuer])

            wait_until_presented(lambda: c.get(server.url), serial_of(leaf))
            assert in_flight.read() == b"hello from asyncio\n"
            assert in_flight.headers["x-client-serial"] == before


def _tls12_with(context: ssl.SSLContext, ciphers: str) -> None:
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(f"{ciphers}:@SECLEVEL=0")


WEAK_SERVERS = {
    "TLS 1.1": lambda c: setattr(c, "maximum_version", ssl.TLSVersion.TLSv1_1),
    "CBC suite": lambda c: _tls12_with(c, "ECDHE-ECDSA-AES128-SHA256"),
    "X448": lambda c: set_groups(c, "X448"),
    "P-521": lambda c: set_groups(c, "P-521"),
    "none (the twin that passes)": lambda c: None,
}


@contextlib.contextmanager
def tls_server(
    issuer: Issuer,
    weaken: Callable[[ssl.SSLContext], object],
    leaf: trustme.LeafCert | None = None,
) -> Iterator[str]:
    """A plain ``ssl`` server on 127.0.0.1 presenting ``leaf`` (default: a new one), weakened by
    ``weaken``; yields its URL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    (leaf or issuer.issue("localhost")).configure_cert(context)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        weaken(context)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # so that the loop sees ``stop``
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            with contextlib.suppress(OSError), context.wrap_socket(raw, server_side=True) as tls:
                tls.recv(4096)
                tls.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize("weakness", WEAK_SERVERS)
@pytest.mark.parametrize("name", CLIENTS)
def test_a_server_outside_the_policy_is_refused(server: Server, name: str, weakness: str) -> None:
    with tls_server(server.issuer, WEAK_SERVERS[weakness]) as url:
        weak = Server(url, server.directory, server.client_dir, server.issuer)
        with CLIENTS[name](weak) as get:
            if weakness.startswith("none"):
                assert get().status_code == 200
            else:
                with pytest.raises(Exception, match="(?i)ssl|handshake|protocol|alert|eof"):
                    get()


@pytest.mark.parametrize("name", CLIENTS)
def test_the_policy_from_the_ca_is_what_the_client_applies(server: Server, name: str) -> None:
    leaf = server.issuer.issue("client.test")
    with tls_server(server.issuer, functools.partial(_tls12_with, ciphers="ECDHE+AESGCM")) as url:
        weak = Server(url, server.directory, server.client_dir, server.issuer)
        try:
            publish(server.client_dir, leaf, [server.issuer], MODERN)
            with CLIENTS[name](weak) as get:
                with pytest.raises(Exception, match="(?i)ssl|handshake|protocol|alert|eof"):
                    get()
        finally:
            publish(server.client_dir, leaf, [server.issuer])
        with CLIENTS[name](weak) as get:
            assert get().status_code == 200


@pytest.mark.parametrize("name", CLIENTS)
def test_a_revoked_server_is_refused_and_a_stale_crl_takes_no_traffic_down(
    server: Server, name: str, tmp_path: Path
) -> None:
    # Issue 23: a client whose directory holds ca.crl refuses a server it lists.
    issuer, leaf = server.issuer, server.issuer.issue("localhost")
    client = issuer.issue("client.test")
    with tls_server(issuer, lambda _: None, leaf) as url:
        for published, enforced in (
            (crl(issuer, [leaf]), True),
            (crl(issuer, [leaf], age=datetime.timedelta(days=8)), False),
        ):
            directory = tmp_path / str(enforced)
            publish(directory, client, [issuer], crl=published)
            with CLIENTS[name](Server(url, server.directory, directory, issuer)) as get:
                if enforced:
                    with pytest.raises(Exception, match="(?i)revoked|ssl|verify"):
                        get()
                else:
                    assert get().status_code == 200
