"""The CA's gunicorn worker without a server: when a buffered request is whole, which worker
serves which port and on which loop, and that the TLS library's start check takes it for the
gthread it is."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config

from mtls_ca.gunicorn_worker import (
    MAX_BODY,
    BufferingThreadWorker,
    ConnectionLimits,
    Refused,
    request_size,
    serve_apart,
)
from mtls_ca.http_api import MAX_REQUEST_BYTES
from mtls_context.gunicorn_hooks import refuse_workers_that_never_reload

GET = b"GET /roots HTTP/1.1\r\nHost: ca\r\n\r\n"
POST = b"POST /sign HTTP/1.1\r\nHost: ca\r\nContent-Length: 10\r\n\r\n"


@pytest.mark.parametrize(
    ("buffer", "size"),
    [
        (b"", None),
        (GET[:-2], None),
        (GET, (len(GET), 0)),
        (GET + b"GET /tls-policy", (len(GET), 0)),  # the next request stays for later
        (POST, (len(POST) + 10, 0)),
        (POST + b"0123456789", (len(POST) + 10, 0)),
        (POST.replace(b"10", b"999999999"), (len(POST) + 7 + MAX_BODY, 999999999 - MAX_BODY)),
        (b"NOT HTTP\r\n\r\n", (len(b"NOT HTTP\r\n\r\n"), 0)),  # gunicorn's 400, from memory
    ],
)
def test_a_request_is_whole_with_its_head_and_its_body_up_to_the_limit(
    buffer: bytes, size: tuple[int, int] | None
) -> None:
    assert request_size(Config(), buffer) == size


def test_a_body_of_unknown_length_is_refused() -> None:
    chunked = b"POST /sign HTTP/1.1\r\nHost: ca\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"
    with pytest.raises(Refused, match="a request body needs a Content-Length") as refused:
        request_size(Config(), chunked)
    assert refused.value.status == "411 Length Required"


def test_the_worker_reads_every_body_the_api_takes() -> None:
    assert MAX_BODY >= MAX_REQUEST_BYTES


class _Listener:
    def __init__(self, port: int) -> None:
        self.port = port

    def getsockname(self) -> tuple[str, int]:
        return ("0.0.0.0", self.port)


class _Arbiter:
    """What the hook sees of gunicorn's arbiter: its listeners and living workers."""

    def __init__(self, workers: int, sign_workers: int, event_loop: bool = False) -> None:
        self.LISTENERS = [_Listener(8443), _Listener(8444)]
        self.WORKERS: dict[int, Any] = {}
        self.log = SimpleNamespace(info=lambda *args: None)
        self.hook = serve_apart(8444, sign_workers, workers, event_loop=event_loop)
        self.age = 0

    def spawn(self) -> None:
        self.age += 1
        worker = SimpleNamespace(age=self.age, sockets=list(self.LISTENERS))
        self.hook(self, worker)
        self.WORKERS[self.age] = worker

    def signers(self) -> int:
        return sum(1 for w in self.WORKERS.values() if [s.port for s in w.sockets] == [8444])


def test_the_signing_port_has_workers_of_its_own_after_deaths_and_reloads() -> None:
    arbiter = _Arbiter(workers=5, sign_workers=2)
    for _ in range(5):
        arbiter.spawn()
    assert arbiter.signers() == 2
    assert all(len(w.sockets) == 1 for w in arbiter.WORKERS.values())
    for dead in (1, 3):  # a signer, then one of the others
        del arbiter.WORKERS[dead]
        arbiter.spawn()
        assert arbiter.signers() == 2
    old = sorted(arbiter.WORKERS)
    for _ in range(5):  # SIGHUP: gunicorn starts a new set, then stops the old one
        arbiter.spawn()
    for age in old:
        del arbiter.WORKERS[age]
    assert arbiter.signers() == 2


@pytest.mark.parametrize("event_loop", [False, True])
def test_only_the_signing_workers_of_a_signer_serve_on_the_event_loop(event_loop: bool) -> None:
    arbiter = _Arbiter(workers=4, sign_workers=2, event_loop=event_loop)
    for _ in range(4):
        arbiter.spawn()
    on_loop = {w.age for w in arbiter.WORKERS.values() if w.event_loop}
    signing = {w.age for w in arbiter.WORKERS.values() if [s.port for s in w.sockets] == [8444]}
    assert on_loop == (signing if event_loop else set())
    assert len(signing) == 2


def test_the_tls_library_takes_the_worker_for_the_gthread_it_is() -> None:
    worker = BufferingThreadWorker.with_limits(ConnectionLimits(request_timeout=3))
    assert worker.limits.request_timeout == 3
    refuse_workers_that_never_reload(SimpleNamespace(cfg=SimpleNamespace(worker_class=worker)))
