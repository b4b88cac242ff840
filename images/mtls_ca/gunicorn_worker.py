"""The CA's gunicorn worker: gthread, whose threads never wait for a client.

gunicorn's gthread worker (27.0) hands each new connection to its thread pool, where the TLS
handshake and the reading of the request are blocking calls without a deadline
(``TConn.init`` and ``ThreadWorker.handle`` in ``gunicorn/workers/gthread.py``). A client that
sends one byte and goes quiet holds a thread for good, and a few hundred of them hold every
thread of the process, whatever port they came to (issue "Issuance never stops"). A socket
timeout would only bound each wait: the threads would still queue behind the idle clients, and a
client that sends a byte every few seconds would never time out. So this worker keeps gthread's
loop, pool and request handling, and changes what a thread does with a connection:

* it takes what the client has sent so far (the TLS handshake, then the request) without
  waiting; when more is to come, the connection goes back to the worker's loop until its
  socket is ready, as gthread itself does with a client that has sent nothing yet (``_DEFER``).
  The handshake must be done within ``handshake_timeout``, the request within
  ``request_timeout``, or the loop closes the connection;
* it answers only once the whole request is in memory (the head, the body up to `MAX_BODY`),
  where gunicorn's parser then reads it;
* a connection still being answered ``request_timeout`` after that is shut down (a client that
  does not read the answer);
* one client address holds at most ``per_address`` connections in the worker: a new one beyond
  that closes the address's oldest connection that waits for its handshake or request;
* a connection closed while its client may still be sending (a body larger than `MAX_BODY`,
  which the app refuses with 413; a request the worker refuses itself) is half-closed and
  drained on the loop for at most `LINGER_SECONDS` and `MAX_LINGER_BYTES` before it closes
  (RFC 9112 section 9.6): closing with unread bytes resets the connection, and a client still
  sending would see the reset instead of the answer. gunicorn's own graceful close does this
  with a blocking wait on the loop, which a client that stays would stall.

`serve_apart` gives the signing port worker processes of its own, and on a CA signer hands
them to an event loop instead (`mtls_ca.event_worker`), with the same limits.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import math
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from gunicorn import http
from gunicorn import sock as gunicorn_sock
from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import TConn, ThreadWorker

__all__ = [
    "LINGER_SECONDS",
    "MAX_BODY",
    "MAX_HEAD",
    "BufferingThreadWorker",
    "ConnectionLimits",
    "Refused",
    "request_size",
    "serve_apart",
]

MAX_HEAD = 32 * 1024
"""The largest request head read; a longer one is refused (431)."""
MAX_BODY = 64 * 1024
"""The most of a body read before a thread gets the request: the API's largest
(`mtls_ca.http_api.MAX_REQUEST_BYTES`), so the app refuses a larger one (413) from memory, and
as much as gunicorn drains of a body the app did not read, so that drain never waits either."""
MAX_LINGER_BYTES = 1024 * 1024
"""The most of a larger body drained after its answer; beyond that the connection just closes."""
LINGER_SECONDS = 2.0
"""How long the rest of a larger body is drained after its answer (`MAX_LINGER_BYTES`)."""


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines (seconds) and bounds of every connection (``hello-mtls-ca serve --help``)."""

    handshake_timeout: float = 5.0
    request_timeout: float = 10.0
    per_address: int = 64


class Refused(Exception):
    """A request the worker answers itself, before a thread gets it."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def request_size(cfg: Any, buffer: bytes) -> tuple[int, int] | None:
    """Bytes of ``buffer`` that make up its first request once its head is complete, with the
    body up to `MAX_BODY` (gunicorn's own parser reads the head), and the bytes of the body
    beyond that; None while the head is not complete.

    A head gunicorn refuses counts as complete: gunicorn answers it from memory.

    Raises:
        Refused: a body of unknown length (``Transfer-Encoding``), which could not be read
            whole before a thread gets the request.
    """
    parser = http.get_parser(cfg, [buffer], None)
    try:
        request = next(parser)
    except (NoMoreData, StopIteration):
        return None
    except Exception:
        return len(buffer), 0
    head = len(buffer) - len(parser.unreader.take_buffered())
    headers = dict(request.headers)  # gunicorn refuses a repeated Content-Length
    if "TRANSFER-ENCODING" in headers:
        raise Refused("411 Length Required", "a request body needs a Content-Length")
    length = int(headers.get("CONTENT-LENGTH", 0))
    return head + min(length, MAX_BODY), max(0, length - MAX_BODY)


class _Wait(enum.Enum):
    """What `BufferingThreadWorker.handle` returns for a client that has more to send."""

    READ = selectors.EVENT_READ
    WRITE = selectors.EVENT_WRITE


class _Conn(TConn):  # type: ignore[misc]
    def __init__(self, cfg: Any, sock: Any, client: Any, server: Any, forget: Any, deadline: float):
        super().__init__(cfg, sock, client, server)
        self.address = str(client[0]) if isinstance(client, tuple) else str(client)
        self.forget: Callable[[_Conn], None] = forget
        self.handshaking = bool(cfg.is_ssl)
        self.deadline: float | None = deadline
        """When the handshake or the request must be in; None: none is under way."""
        self.buffer = bytearray()
        self.scanned = 0
        self.size: int | None = None
        self.answer_by = math.inf
        self.cut = False
        self.evicted = False
        self.unread = False
        """The client may still be sending: the connection lingers when it closes."""
        self.lingering = False
        self.drained = 0

    def close(self, graceful: bool = False) -> None:
        # Never gunicorn's graceful close: it waits up to 2 s for the client to close, on the
        # worker's loop (ThreadWorker.finish_request), so a client that stays could stall it.
        # It exists for request bytes left unread, and here a thread gets the whole request.
        self.forget(self)
        super().close(graceful=False)


class BufferingThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread whose threads never wait for a client (see the module)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    event_loop = False
    """Serve with `mtls_ca.event_worker` instead of gthread (`serve_apart` sets it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only the loop's thread touches these.
        self._waiting: set[_Conn] = set()
        self._in_pool: set[_Conn] = set()
        self._by_address: dict[str, list[_Conn]] = {}
        self.dropped: Any = None

    @classmethod
    def with_limits(cls, limits: ConnectionLimits) -> type[BufferingThreadWorker]:
        """This worker class with ``limits`` (gunicorn builds each worker from the class)."""
        return type(cls.__name__, (cls,), {"limits": limits})

    def init_process(self) -> None:
        from . import metrics  # in the worker: prometheus-client reads its env at import

        self.dropped = metrics.CONNECTIONS_DROPPED
        super().init_process()

    def run(self) -> None:
        if self.event_loop:
            from . import event_worker  # it builds on this module

            event_worker.run(self, self.limits)
        else:
            super().run()

    def accept(self, listener: Any) -> None:
        try:
            client, address = listener.accept()
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        limits = self.limits
        timeout = limits.handshake_timeout if self.cfg.is_ssl else limits.request_timeout
        deadline = time.monotonic() + timeout
        conn = _Conn(self.cfg, client, address, listener.getsockname(), self._forget, deadline)
        if self._admit(conn):
            self.nr_conns += 1
            self.enqueue_req(conn)

    def enqueue_req(self, conn: _Conn) -> None:
        self._in_pool.add(conn)
        super().enqueue_req(conn)

    def handle(self, conn: _Conn) -> Any:
        """In a thread: read what the client sent; answer once the whole request is in."""
        try:
            if not self._receive(conn):
                return False
        except ssl.SSLWantWriteError:
            return _Wait.WRITE
        except (ssl.SSLWantReadError, BlockingIOError):
            return _Wait.READ
        except Refused as refused:
            self._refuse(conn, refused)
            return False
        except OSError as e:  # a failed handshake, a reset
            self.log.debug("closing %s: %s", conn.client, e)
            return False
        conn.answer_by = time.monotonic() + self.limits.request_timeout
        _cork(conn.sock, True)
        try:
            return super().handle(conn)
        finally:
            conn.answer_by = math.inf
            _cork(conn.sock, False)

    def finish_request(self, conn: _Conn, fs: Any) -> None:
        self._in_pool.discard(conn)
        result = fs.result() if not fs.cancelled() and fs.exception() is None else None
        if conn.evicted:
            self._end(conn)
        elif not result and conn.unread and self.alive:
            self._linger(conn)
        elif not isinstance(result, _Wait):
            super().finish_request(conn, fs)
        elif self.alive:
            self.poller.register(conn.sock, result.value, partial(self._ready, conn))
            self._waiting.add(conn)
        else:
            self._end(conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self._waiting if not self.alive or (c.deadline or 0) <= now]:
            if self.alive and not conn.lingering:
                reason = "handshake_timeout" if conn.handshaking else "request_timeout"
                self.dropped.labels(reason=reason).inc()
            self._end(conn)
        for conn in self._in_pool:
            if conn.answer_by <= now and not conn.cut:
                # Below TLS: the thread may be in SSL_write on this socket, and
                # SSLSocket.shutdown would take the SSL object away from under it.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
                conn.cut = True
                self.dropped.labels(reason="response_timeout").inc()

    def _receive(self, conn: _Conn) -> bool:
        """Read the connection's next request into memory without waiting (the handshake
        first); False: the client closed. Raises ``SSLWant...Error``/``BlockingIOError`` while
        there is more to come."""
        if conn.parser is None:
            if conn.handshaking and not isinstance(conn.sock, ssl.SSLSocket):
                conn.sock = gunicorn_sock.ssl_context(self.cfg).wrap_socket(
                    conn.sock,
                    server_side=True,
                    do_handshake_on_connect=False,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs,
                )
            # Set here, so that gthread's TConn.init does not wrap the socket again.
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.sock.setblocking(False)
        if conn.handshaking:
            conn.sock.do_handshake()
            conn.handshaking, conn.deadline = False, None
        if conn.deadline is None:
            conn.deadline = time.monotonic() + self.limits.request_timeout
        conn.buffer += conn.parser.unreader.take_buffered()  # what the last request left
        while not self._whole(conn):
            data = conn.sock.recv(65536)
            if not data:
                return False
            conn.buffer += data
        conn.parser.unreader.unread(bytes(conn.buffer))
        conn.buffer, conn.scanned, conn.size, conn.deadline = bytearray(), 0, None, None
        conn.data_ready = True  # gthread waits for data otherwise
        return True

    def _whole(self, conn: _Conn) -> bool:
        """Whether the buffer holds a whole request (the body up to `MAX_BODY`)."""
        if conn.size is None:
            end = conn.buffer.find(b"\r\n\r\n", max(0, conn.scanned - 3))
            conn.scanned = len(conn.buffer) if end < 0 else end + 4
            if end >= 0 and (sized := request_size(self.cfg, bytes(conn.buffer))) is not None:
                conn.size, beyond = sized
                conn.unread = beyond > 0
            if conn.size is None:
                if len(conn.buffer) > MAX_HEAD:
                    raise Refused(
                        "431 Request Header Fields Too Large",
                        f"the request head is larger than {MAX_HEAD} bytes",
                    )
                return False
        return len(conn.buffer) >= conn.size

    def _ready(self, conn: _Conn, *_: Any) -> None:
        self.poller.unregister(conn.sock)
        self._waiting.discard(conn)
        self.enqueue_req(conn)

    def _admit(self, conn: _Conn) -> bool:
        peers = self._by_address.setdefault(conn.address, [])
        if len(peers) >= self.limits.per_address:
            oldest = next((c for c in peers if c.deadline is not None), None)
            self.dropped.labels(reason="per_address").inc()
            if oldest is None:  # every one is being answered or kept alive
                conn.close()
                return False
            if oldest in self._waiting:
                self._end(oldest)
            else:  # a thread is taking what it sent: closed when the thread is done
                oldest.evicted = True
                self._forget(oldest)
        peers.append(conn)
        return True

    def _forget(self, conn: _Conn) -> None:
        peers = self._by_address.get(conn.address, [])
        if conn in peers:
            peers.remove(conn)
            if not peers:
                del self._by_address[conn.address]

    def _refuse(self, conn: _Conn, refused: Refused) -> None:
        body = json.dumps({"error": str(refused)}).encode()
        head = (
            f"HTTP/1.1 {refused.status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):  # best effort: the client may not be reading
            conn.sock.send(head.encode() + body)
        conn.unread = True
        self.dropped.labels(reason="refused").inc()

    def _linger(self, conn: _Conn) -> None:
        """Half-close ``conn`` and drain what its client still sends (`_drain`), on the loop."""
        # SSLSocket.shutdown drops the TLS object (no close_notify: the answer said its
        # length) and sends FIN; what comes after is read as the raw bytes it is, and dropped.
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
        conn.sock.setblocking(False)
        conn.lingering, conn.deadline = True, time.monotonic() + LINGER_SECONDS
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._drain, conn))
        self._waiting.add(conn)

    def _drain(self, conn: _Conn, *_: Any) -> None:
        try:
            while conn.drained < MAX_LINGER_BYTES:
                data = conn.sock.recv(65536)
                if not data:
                    break
                conn.drained += len(data)
        except (BlockingIOError, InterruptedError):
            return  # more to come: the loop calls again, or the deadline ends it
        except OSError:
            pass
        self._end(conn)

    def _end(self, conn: _Conn) -> None:
        if conn in self._waiting:
            self.poller.unregister(conn.sock)
            self._waiting.discard(conn)
        self.nr_conns -= 1
        conn.close()


def _cork(sock: socket.socket, on: bool) -> None:
    """Hold (``on``) or send what is written to ``sock`` (Linux's ``TCP_CORK``).

    gunicorn writes an answer's head and body in two sends, so two TLS records in two segments
    for the client to take in; corked while the answer is written, they leave as one segment
    when the answer is complete: ``bench-ca`` measured 1.6x the signatures/s over 8 keep-alive
    clients at the same CPU per signature.
    """
    with contextlib.suppress(OSError):  # a socket that is closed, or not TCP
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))


def serve_apart(
    sign_port: int, sign_workers: int, workers: int, *, event_loop: bool = False
) -> Callable[[Any, Any], None]:
    """A gunicorn ``pre_fork`` hook: ``sign_workers`` of the ``workers`` worker processes
    serve only the listener on ``sign_port``, the others only the rest. ``event_loop``: the
    signing workers serve with `mtls_ca.event_worker` instead of gthread (a signer's).

    Every worker gets every listener from gunicorn; the hook takes away the other kind's
    before the fork. A new worker takes the role its ``workers - 1`` youngest siblings are
    short of, which also holds while a reload (SIGHUP) starts a new set beside the old one.
    """

    def pre_fork(server: Any, worker: Any) -> None:
        signing = [s for s in server.LISTENERS if s.getsockname()[1] == sign_port]
        reading = [s for s in server.LISTENERS if s.getsockname()[1] != sign_port]
        youngest = sorted(server.WORKERS.values(), key=lambda w: -w.age)[: workers - 1]
        signers = sum(1 for w in youngest if w.sockets == signing)
        worker.sockets = signing if signers < sign_workers else reading
        worker.event_loop = event_loop and worker.sockets == signing
        role = "POST /sign" if worker.sockets == signing else "the read-only endpoints"
        server.log.info("worker %s serves %s", worker.age, role)

    return pre_fork
