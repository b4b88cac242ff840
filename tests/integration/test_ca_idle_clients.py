"""Idle, slow and half-open clients on every port of the real ``hello-mtls-ca serve`` never
delay ``POST /sign`` (issue "Issuance never stops"): the CA drops them by its deadlines, bounds
what one address holds, refuses what it cannot read whole, cuts off a client that does not read
its answers and does not wait for one that stays after its answer.

Each test runs against both servers of ``POST /sign``: gthread (`mtls_ca.gunicorn_worker`), the
root holder's, and the event loop (`mtls_ca.event_worker`), a signer's signing port.

Run with ``-s`` to see the figures (signature latency under the attack, seconds to each drop).
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from harness import processes
from harness.ca_service import Service, credential_session, root_holder_and_signer
from harness.processes import free_port
from harness.waiting import wait_until
from mtls_ca.gunicorn_worker import MAX_BODY
from mtls_context import layout
from support.csrs import csr_pem
from support.idle_clients import KINDS, IdleClients

PER_KIND = 100  # per port: 300 idle connections on each of the two ports
SIGN_WITHIN = 20.0


@pytest.fixture(params=["gthread", "event-loop"])
def worker(request: pytest.FixtureRequest) -> str:
    """Which server answers ``POST /sign``: the root holder's gthread or a signer's loop."""
    return str(request.param)


@contextlib.contextmanager
def _ca(
    worker: str, pki: Path, work: Path, *args: str, one_worker: bool = False
) -> Iterator[tuple[Service, int]]:
    """``serve`` with ``args``, whose ``POST /sign`` is served by ``worker``; yields the
    service and its port of ``POST /sign``. ``one_worker``: one worker process serves that
    port, so that the bounds of one worker are what its clients meet."""
    # gthread: the root holder of pki/state, POST /sign on a port of its own, or with one
    # worker on its one port. event-loop: a signer of that root holder, whose loop serves its
    # signing port (--sign-bind).
    sign_port = free_port()
    if worker == "gthread":
        how = ["--workers=1"] if one_worker else [f"--sign-bind=127.0.0.1:{sign_port}"]
        service = Service(pki / "state", work / "serve.log", *how, *args)
        try:
            yield service, service.port if one_worker else sign_port
        finally:
            service.stop()
        return
    how = ["--workers=1", "--sign-workers=1"] if one_worker else []
    signer_args = (f"--sign-bind=127.0.0.1:{sign_port}", *how, *args)
    ca = pki / "prov" / layout.CA
    with root_holder_and_signer(pki / "state", work, ca, signer_args=signer_args) as (_, signer):
        url = f"https://127.0.0.1:{sign_port}/healthz"  # ready once it holds the material
        anyone = credential_session(pki, None)
        wait_until(url, partial(_answers, anyone, url), 30, retry_on=(requests.RequestException,))
        yield signer, sign_port


@pytest.fixture
def attack(pki: Path) -> Iterator[IdleClients]:
    context = ssl.create_default_context(cafile=str(pki / "prov" / layout.CA))
    clients = IdleClients(context)
    yield clients
    clients.close()


def _sign_request() -> dict[str, object]:
    return {"csr": csr_pem(), "names": ["web.demo"], "namespace": "demo", "duration": "1h"}


def _answers(session: requests.Session, url: str) -> bool:
    return session.get(url, timeout=5).ok


def _dropped(session: requests.Session, url: str) -> dict[str, int]:
    """``hello_mtls_ca_connections_dropped_total`` by reason, from ``GET /metrics``."""
    text = session.get(f"{url}/metrics", timeout=20).text
    found = re.findall(
        r'^hello_mtls_ca_connections_dropped_total\{reason="(\w+)"\} (\S+)$', text, re.M
    )
    return {reason: int(float(value)) for reason, value in found if float(value)}


def test_idle_clients_on_every_port_never_delay_post_sign(
    pki: Path, attack: IdleClients, worker: str, tmp_path: Path
) -> None:
    # Every held connection comes from 127.0.0.1, like the operator's: the per-address bound
    # (its own test below) would close most of them at once, and this test is about deadlines.
    with _ca(worker, pki, tmp_path, "--max-connections-per-address=1000") as (service, sign_port):
        sign_url = f"https://127.0.0.1:{sign_port}"
        operator, anyone = credential_session(pki, "prov"), credential_session(pki, None)
        for url in (f"{service.url}/healthz", f"{sign_url}/healthz"):
            wait_until(
                url, partial(_answers, anyone, url), 30, retry_on=(requests.RequestException,)
            )
        for port in (service.port, sign_port):
            attack.open(port, per_kind=PER_KIND, handshake_within=15)
        held = len(attack.held)
        with attack.trickling():
            start = time.monotonic()
            try:
                answer = operator.post(
                    f"{sign_url}/sign", json=_sign_request(), timeout=SIGN_WITHIN
                )
            except requests.RequestException as error:
                pytest.fail(f"POST /sign under {held} idle connections failed: {error!r}")
            latency = time.monotonic() - start
            print(f"\n{worker}: POST /sign under {held} idle connections: {latency:.3f} s")
            assert answer.status_code == 200, answer.text
            assert latency < SIGN_WITHIN
            assert anyone.get(f"{service.url}/healthz", timeout=SIGN_WITHIN).json() == {
                "status": "ok"
            }
            assert attack.stalled_handshakes() == 0
            wait_until(
                "the CA to drop every idle connection", lambda: attack.open_count() == 0, 90, 0.5
            )
        for kind in KINDS:
            seconds = attack.seconds_to_close(kind)
            print(f"{kind}: {len(seconds)} dropped after {min(seconds):.1f}-{max(seconds):.1f} s")

        def all_counted() -> dict[str, int] | None:
            dropped = _dropped(anyone, service.url)
            return dropped if sum(dropped.values()) >= held else None

        assert wait_until("the drops in the CA's metrics", all_counted, 30) == {
            "handshake_timeout": 2 * PER_KIND,
            "request_timeout": 4 * PER_KIND,
        }


HOLDER = "127.0.0.3"
"""The address that holds connections in the per-address test."""


class _FromAddress(HTTPAdapter):
    """Connects from ``address`` (a loopback address other than 127.0.0.1)."""

    def __init__(self, address: str) -> None:
        self._address = address
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["source_address"] = (self._address, 0)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


def test_one_address_holds_a_bounded_number_of_connections(
    pki: Path, attack: IdleClients, worker: str, tmp_path: Path
) -> None:
    limits = ("--max-connections-per-address=4", "--handshake-timeout=120")
    with _ca(worker, pki, tmp_path, *limits, one_worker=True) as (service, port):
        # From an address of their own: the readiness probe's connection from 127.0.0.1 may
        # still be in the CA's table when the test starts, and would be counted among the drops.
        attack.open(port, per_kind=10, handshake_within=0, kinds=("one-byte",), source=HOLDER)
        wait_until("the CA to keep 4 of 10 connections", lambda: attack.open_count() == 4, 30, 0.2)
        assert [h.closed is None for h in attack.held] == [False] * 6 + [True] * 4
        # Another client at that address still gets in: it closes the oldest waiting one.
        neighbour = credential_session(pki, None)
        neighbour.mount("https://", _FromAddress(HOLDER))
        assert neighbour.get(f"https://127.0.0.1:{port}/healthz", timeout=20).json() == {
            "status": "ok"
        }
        wait_until("the CA to close one more", lambda: attack.open_count() == 3, 30, 0.2)
        assert _dropped(credential_session(pki, None), service.url) == {"per_address": 7}


def _tls(
    port: int, pki: Path, receive_buffer: int = 0, credential: str | None = None
) -> ssl.SSLSocket:
    raw = socket.socket()
    if receive_buffer:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    raw.settimeout(20)
    raw.connect(("127.0.0.1", port))
    context = ssl.create_default_context(cafile=str(pki / "prov" / layout.CA))
    if credential is not None:
        context.load_cert_chain(pki / credential / layout.CERT, pki / credential / layout.KEY)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _answer(sock: ssl.SSLSocket) -> bytes:
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    return answer


def test_what_cannot_be_read_whole_is_refused_and_clients_that_stay_are_let_go(
    pki: Path, worker: str, tmp_path: Path
) -> None:
    with _ca(worker, pki, tmp_path, "--request-timeout=2", one_worker=True) as (service, port):
        with _tls(port, pki) as chunked:
            chunked.sendall(
                b"POST /sign HTTP/1.1\r\nHost: ca\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            assert _answer(chunked).endswith(
                b"411 Length Required\r\nContent-Type: application/json\r\nContent-Length: 50\r\n"
                b'Connection: close\r\n\r\n{"error": "a request body needs a Content-Length"}'
            )
        with _tls(port, pki) as huge:
            huge.sendall(b"GET /roots HTTP/1.1\r\nX-Huge: " + b"a" * 40_000)
            assert _answer(huge).startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        # Asks for 16 MB of answers, more than any socket buffer holds, and reads none of it.
        with _tls(port, pki, receive_buffer=1024) as deaf:
            deaf.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: ca\r\n\r\n" * 1000)
            anyone = credential_session(pki, None)
            wait_until(
                "the CA to cut the client off",
                lambda: _dropped(anyone, service.url).get("response_timeout") == 1,
                30,
                0.5,
            )
        assert _dropped(anyone, service.url) == {"refused": 2, "response_timeout": 1}
        # Clients that got their answer and stay: gthread's graceful close would wait 2 s for
        # each on the worker's loop (40 s here); the CA closes at once.
        staying = [_tls(port, pki) for _ in range(20)]
        for sock in staying:
            sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        try:
            assert all(b'{"status":"ok"}' in _answer(sock) for sock in staying)
            assert anyone.get(f"https://127.0.0.1:{port}/healthz", timeout=15).ok
        finally:
            for sock in staying:
                sock.close()


def test_a_client_still_sending_a_body_too_large_gets_its_answer(
    pki: Path, worker: str, tmp_path: Path
) -> None:
    """The CA answers 413 once it has read `MAX_BODY` of a larger body and closes; a client
    still sending the rest must get to send it and read the answer. Closing with bytes unread
    resets the connection, and the client's next write fails (seen in CI: requests' POST of a
    130 KB body raised ``EOF occurred in violation of protocol``); the CA half-closes and
    drains instead."""
    length, first = 3 * MAX_BODY, MAX_BODY + 16 * 1024  # 16 KiB unread when the CA answers
    with _ca(worker, pki, tmp_path, one_worker=True) as (_, port):
        with _tls(port, pki, credential="prov") as client:
            client.sendall(
                b"POST /sign HTTP/1.1\r\nHost: ca\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {length}\r\n\r\n".encode()
                + b" " * first
            )
            wait_until(
                "the CA to answer and close its side",
                lambda: _tcp_state(client) != _ESTABLISHED,
                20,
                0.05,
            )
            client.sendall(b" " * (length - first))  # a reset connection raises here
            answer = _answer(client)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert answer.endswith(b'{"error":"request body is larger than 65536 bytes"}\n')


_ESTABLISHED = 1  # Linux's TCP states (include/net/tcp_states.h)


def _tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of ``sock`` (the first byte of ``struct tcp_info``)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def _one_answer(sock: ssl.SSLSocket) -> bytes:
    """One answer on a kept-alive connection: its head and the body its length says."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def test_a_stopping_signer_closes_kept_alive_connections_in_order(
    pki: Path, tmp_path: Path
) -> None:
    """SIGTERM (a rollout): the signing loop closes a connection kept alive between requests
    as TLS closes (close_notify, then FIN), having flushed what it wrote, and exits. (gthread
    leaves its kept-alive connections to the kernel at exit: FIN without close_notify.)"""
    with _ca("event-loop", pki, tmp_path, one_worker=True) as (service, port):
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        context = ssl.create_default_context(cafile=str(pki / "prov" / layout.CA))
        # A ragged EOF (no close_notify) raises instead of reading as the end.
        with context.wrap_socket(
            raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False
        ) as kept:
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: ca\r\n\r\n")
            assert _one_answer(kept).endswith(b'{"status":"ok"}\n')
            processes.stop(service.process, timeout=30)
            assert kept.recv(4096) == b""
