"""A CA signer's signing port: one event loop (uvloop) per worker process, where TLS and the
HTTP parser (httptools) run in C and each request is answered on the loop itself.

Why not gthread, as on every other port (`mtls_ca.gunicorn_worker`): for each request on a
keep-alive connection, gthread's loop hands the connection to a thread, which reads and parses
the request with gunicorn's parser in Python, answers, and hands the connection back to the loop
through its poller. Under ``make bench-ca`` a signer pod spent 1.47 ms of CPU per signature
that way and 0.91 ms this way (docs/decisions/2026-12-07-signing-port-event-loop.md), and
``POST /sign`` is what the CA serves most. Handing each whole request from this loop to a thread
pool instead still cost 0.22 ms more (the GIL changing hands twice per request): on a signer
nothing a request does waits on a disk (its audit trail is on memory, `mtls_ca.gunicorn_app`),
so the loop answers it itself.
The root holder, whose audit trail and index are flushed to its volume, keeps gthread, where
concurrent signatures share one flush (`mtls_ca.durability`).

Why not uvicorn, which is such a loop for ASGI apps: the CA's app is WSGI, and uvicorn sets no
deadline on the reading of a request nor a bound on connections per client, and gives a TLS
handshake asyncio's 60 s. This loop keeps the limits of gthread's worker, so that a client that
is idle, slow or hostile never delays another's signature (docs/ca.md):

* the TLS handshake must be done within ``handshake_timeout``, and a request within
  ``request_timeout`` of the handshake or of its first byte; between requests a keep-alive
  connection closes after gunicorn's ``keepalive`` seconds;
* a request's head is at most `MAX_HEAD` bytes (431), its body is read up to `MAX_BODY` (the
  app answers a larger one 413), and a body of unknown length is refused (411);
* an answer the client does not read within ``request_timeout`` closes the connection;
* one client address holds at most ``per_address`` connections: a new one beyond that closes the
  address's oldest connection that waits for its handshake or request, or is itself closed; the
  worker holds at most gunicorn's ``worker_connections`` and accepts no more until one ends;
* a connection closed while its client may still be sending is half-closed and drained for at
  most `LINGER_SECONDS` and `MAX_LINGER_BYTES` first (RFC 9112 section 9.6);
* pipelined requests are answered one per turn of the loop, so one client's queue never holds
  the others' back.

gunicorn still runs the process: it forks it, watches its heartbeat, stops it, and gives it its
TLS context (`mtls_context.gunicorn_hooks`, reloaded when the serving certificate changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools
import uvloop
from gunicorn import sock as gunicorn_sock

from .gunicorn_worker import LINGER_SECONDS, MAX_BODY, MAX_HEAD, MAX_LINGER_BYTES, ConnectionLimits

__all__ = ["run"]

_Answer = tuple[str, list[tuple[str, str]], bytes]
_log = logging.getLogger("mtls_ca")
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_BACKOFF = 0.1
"""Seconds before the next accept after one failed for want of descriptors or memory."""


def run(worker: Any, limits: ConnectionLimits) -> None:
    """Serve the worker's listeners (``worker.sockets``) with its WSGI app (``worker.wsgi``)
    until gunicorn stops the worker or its master goes away."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_Server(worker, limits, loop).serve())
    finally:
        loop.close()


class _PeerCertificate:
    """What ``environ["gunicorn.socket"]`` offers the app: the TLS client certificate, which
    `mtls_context.identity.wsgi_peer_cert` reads there as from gunicorn's socket."""

    def __init__(self, cert: Any) -> None:
        self._cert = cert

    def getpeercert(self) -> Any:
        return self._cert


class _Server:
    """One worker's listeners, connections and bounds."""

    def __init__(
        self, worker: Any, limits: ConnectionLimits, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.worker, self.limits, self.loop = worker, limits, loop
        cfg = worker.cfg
        self.tls = gunicorn_sock.ssl_context(cfg) if cfg.is_ssl else None
        self.keepalive = float(cfg.keepalive)
        self.max_connections = int(cfg.worker_connections)
        self.connections: set[_Connection] = set()
        self.by_address: dict[str, list[_Connection]] = {}
        self.room = asyncio.Event()
        self.dropped = worker.dropped

    async def serve(self) -> None:
        accepting = []
        for listener in self.worker.sockets:
            listener.setblocking(False)
            accepting.append(self.loop.create_task(self._accept(listener)))
        beat = min(max(float(self.worker.timeout), 0.1), 1.0)
        try:
            while self.worker.alive and self.worker.ppid == os.getppid():
                self.worker.notify()
                await asyncio.sleep(beat)
        finally:
            for task in accepting:
                task.cancel()
            await self._finish(float(self.worker.cfg.graceful_timeout))

    async def _finish(self, grace: float) -> None:
        """Close the connections that have no request under way now, and give the others
        ``grace`` seconds at most to get their answer (with ``Connection: close``)."""
        deadline = self.loop.time() + grace
        while self.connections and self.loop.time() < deadline:
            for conn in list(self.connections):
                conn.close_if_between_requests()
            if self.connections:
                await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()

    async def _accept(self, listener: socket.socket) -> None:
        while True:
            while len(self.connections) >= self.max_connections:
                self.room.clear()
                await self.room.wait()
            try:
                client, address = await self.loop.sock_accept(listener)
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:  # retrying at once would spin the loop
                    self.worker.log.warning("accept on %s: %s", listener.getsockname(), e)
                    await asyncio.sleep(_ACCEPT_BACKOFF)
                continue  # else another worker took it, or the client left
            host = str(address[0]) if isinstance(address, tuple) else str(address)
            conn = _Connection(self, host)
            if self._admit(conn):
                conn.open(client)
            else:
                client.close()

    def _admit(self, conn: _Connection) -> bool:
        peers = self.by_address.setdefault(conn.host, [])
        if len(peers) >= self.limits.per_address:
            self.dropped.labels(reason="per_address").inc()
            waiting = (_Connection.HANDSHAKE, _Connection.REQUEST)
            oldest = next((c for c in peers if c.state in waiting), None)
            if oldest is None:  # every one is kept alive between requests
                if not peers:
                    del self.by_address[conn.host]
                return False
            oldest.abort()
            peers = self.by_address.setdefault(conn.host, [])
        peers.append(conn)
        self.connections.add(conn)
        return True

    def forget(self, conn: _Connection) -> None:
        self.connections.discard(conn)
        peers = self.by_address.get(conn.host, [])
        if conn in peers:
            peers.remove(conn)
            if not peers:
                del self.by_address[conn.host]
        self.room.set()


class _Request:
    def __init__(self) -> None:
        self.url = bytearray()
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.method = ""
        self.version = "1.1"
        self.keep_alive = True
        self.unread = False
        """The body is longer than `MAX_BODY`: the rest is drained after the answer."""


class _Connection(asyncio.Protocol):
    """One client connection: its handshake, its requests one at a time, their deadlines."""

    HANDSHAKE, REQUEST, IDLE, DRAINING = "handshake", "request", "idle", "draining"
    """``state``: in the TLS handshake; reading a request (or waiting for one right after the
    handshake); between requests; draining a body after the answer, before closing."""

    def __init__(self, server: _Server, host: str) -> None:
        self.server, self.host, self.loop = server, host, server.loop
        limits = server.limits
        self.state = self.HANDSHAKE if server.tls is not None else self.REQUEST
        first = limits.handshake_timeout if server.tls is not None else limits.request_timeout
        self.timer: asyncio.TimerHandle | None = self.loop.call_later(first, self._expired)
        self.writing = False
        """The deadline armed is the client's, to read what was written."""
        self.blocked = False
        """The client does not read what was written: nothing more is read or answered."""
        self.opening: asyncio.Task[Any] | None = None
        self.transport: Any = None
        self.parser: Any = None
        self.environ: dict[str, Any] = {}
        self.request: _Request | None = None
        self.ready: list[_Request] = []
        self.head_bytes = 0
        self.in_head = True
        """No head is complete since the last request: what comes in counts to `MAX_HEAD`."""
        self.drained = 0
        self.closed = False

    # Opening

    def open(self, client: socket.socket) -> None:
        self.opening = self.loop.create_task(self._open(client))

    async def _open(self, client: socket.socket) -> None:
        tls = self.server.tls
        try:
            await self.loop.connect_accepted_socket(
                lambda: self,
                client,
                ssl=tls,
                # A backstop: `_expired` ends the handshake at handshake_timeout.
                ssl_handshake_timeout=self.server.limits.handshake_timeout + 1 if tls else None,
                ssl_shutdown_timeout=self.server.limits.request_timeout if tls else None,
            )
        except asyncio.CancelledError:
            self._gone()
        except Exception as e:  # a failed handshake, a reset
            self.server.worker.log.debug("closing %s: %s", self.host, e)
            self._gone()

    def connection_made(self, transport: Any) -> None:
        self.transport, self.opening = transport, None
        sockname = transport.get_extra_info("sockname") or ("", 0)
        peername = transport.get_extra_info("peername") or (self.host, 0)
        self.environ = {
            "SCRIPT_NAME": "",
            "SERVER_NAME": str(sockname[0]),
            "SERVER_PORT": str(sockname[1]),
            "REMOTE_ADDR": str(peername[0]),
            "REMOTE_PORT": str(peername[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self.server.tls is not None else "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "gunicorn.socket": _PeerCertificate(transport.get_extra_info("peercert")),
        }
        self.parser = httptools.HttpRequestParser(self)
        if self.state == self.HANDSHAKE:
            self.state = self.REQUEST
            self._arm(self.server.limits.request_timeout)

    # Reading: httptools calls the on_... methods from feed_data

    def data_received(self, data: bytes) -> None:
        if self.state == self.DRAINING or self.parser is None:
            self.drained += len(data)
            if self.drained > MAX_LINGER_BYTES:
                self.abort()
            return
        if self.state == self.IDLE:
            self.state = self.REQUEST
            self._arm(self.server.limits.request_timeout)
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as e:
            if not isinstance(e, httptools.HttpParserCallbackError):
                self._refuse("400 Bad Request", f"the request is not HTTP/1.1: {e}")
                return
            raise  # one of ours: a defect, shown as one
        if self.parser is not None and self.in_head and self.head_bytes > MAX_HEAD:
            size = f"the request head is larger than {MAX_HEAD} bytes"
            self._refuse("431 Request Header Fields Too Large", size)
        self._next()

    def on_message_begin(self) -> None:
        self.request = _Request()

    def on_url(self, url: bytes) -> None:
        if self.request is not None:
            self.request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.request is not None:
            self.request.headers.append((name, value))

    def on_headers_complete(self) -> None:
        request = self.request
        if request is None:
            return
        self.in_head = False
        request.method = self.parser.get_method().decode("latin-1")
        request.version = self.parser.get_http_version()
        request.keep_alive = self.parser.should_keep_alive()
        headers = [(name.lower(), value) for name, value in request.headers]
        if any(name == b"transfer-encoding" for name, _ in headers):
            self._refuse("411 Length Required", "a request body needs a Content-Length")
            return
        length = next((int(v) for n, v in headers if n == b"content-length"), 0)
        request.unread = length > MAX_BODY
        if (b"expect", b"100-continue") in [(n, v.lower()) for n, v in headers]:
            if not request.unread:
                self.transport.write(f"HTTP/{request.version} 100 Continue\r\n\r\n".encode())

    def on_body(self, body: bytes) -> None:
        request = self.request
        if request is None:
            return
        room = MAX_BODY - len(request.body)
        request.body += body[:room]
        if request.unread and len(request.body) >= MAX_BODY:
            # The app answers 413 from the head; the rest is drained after that (`_next`).
            self.drained = len(body) - room
            self.parser = None
            self._complete()

    def on_message_complete(self) -> None:
        if self.request is not None:
            self._complete()

    def _complete(self) -> None:
        request, self.request = self.request, None
        assert request is not None
        self.in_head, self.head_bytes = True, 0
        self.ready.append(request)
        self._disarm()
        if len(self.ready) > 1 and self.transport is not None:
            self.transport.pause_reading()

    # Answering

    def _next(self) -> None:
        """Answer the first request read; the next one waits for the next turn of the loop."""
        if not self.ready or self.blocked or self.closed or self.transport.is_closing():
            return
        request = self.ready.pop(0)
        try:
            environ = self._environ(request)
        except httptools.HttpParserInvalidURLError as e:
            self._refuse("400 Bad Request", f"the request target is not a URL: {e}")
            return
        status, headers, body = _call(self.server.worker.wsgi, environ)
        keep = request.keep_alive and not request.unread and self.server.worker.alive
        self._write(request.version, status, headers, body, keep, head=request.method == "HEAD")
        if request.unread:
            self._linger()
        elif not keep:
            self._close()
        elif self.ready:
            self.loop.call_soon(self._next)
        elif not self.blocked:
            self.transport.resume_reading()
            if not self.waiting_for_first_byte():  # the next one is coming in
                self._arm(self.server.limits.request_timeout)
            else:
                self.state = self.IDLE
                self._arm(self.server.keepalive)

    def _environ(self, request: _Request) -> dict[str, Any]:
        url = httptools.parse_url(bytes(request.url))
        environ = dict(self.environ)
        environ["REQUEST_METHOD"] = request.method
        environ["PATH_INFO"] = unquote_to_bytes(url.path or b"/").decode("latin-1")
        environ["QUERY_STRING"] = (url.query or b"").decode("latin-1")
        environ["SERVER_PROTOCOL"] = f"HTTP/{request.version}"
        environ["wsgi.input"] = io.BytesIO(bytes(request.body))
        for name, value in request.headers:
            key = name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            if key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
                key = "HTTP_" + key
                if key in environ:  # a repeated header: one value, comma-separated
                    text = f"{environ[key]},{text}"
            environ[key] = text
        return environ

    def _write(
        self,
        version: str,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        keep: bool,
        *,
        head: bool = False,
    ) -> None:
        lines = [f"HTTP/{version} {status}"]
        lines += [f"{name}: {value}" for name, value in headers if name.lower() != "connection"]
        if not any(name.lower() == "content-length" for name, _ in headers):
            lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: keep-alive" if keep else "Connection: close")
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.transport.write(head_bytes if head else head_bytes + body)

    def _refuse(self, status: str, message: str) -> None:
        """Answer a request the app never sees, and close (draining what the client sends)."""
        self.request, self.parser, self.ready = None, None, []
        self.server.dropped.labels(reason="refused").inc()
        body = json.dumps({"error": message}).encode()
        self._write("1.1", status, [("Content-Type", "application/json")], body, keep=False)
        self._linger()

    def pause_writing(self) -> None:
        # The client does not read what was written: it has request_timeout to catch up.
        self.blocked = True
        self.transport.pause_reading()
        self._arm(self.server.limits.request_timeout, writing=True)

    def resume_writing(self) -> None:
        self.blocked = False
        if self.state == self.DRAINING:
            self._arm(LINGER_SECONDS)
        elif self.ready:
            self._disarm()
            self.loop.call_soon(self._next)
        else:
            self.transport.resume_reading()
            if self.state == self.IDLE:
                self._arm(self.server.keepalive)
            else:
                self._arm(self.server.limits.request_timeout)

    # Closing

    def _linger(self) -> None:
        """Half-close and drain what the client still sends, for a while, then close."""
        self.state = self.DRAINING
        if self.drained > MAX_LINGER_BYTES:
            self._close()
            return
        if not self.blocked:
            self.transport.resume_reading()
        if self.transport.get_write_buffer_size() == 0:
            # The answer is with the kernel. TLS has no half-close, so FIN goes below it (the
            # answer said its length, so no close_notify is needed), through a copy of the
            # descriptor: the connection is the same, and the loop keeps its own.
            sock = self.transport.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                with socket.fromfd(sock.fileno(), sock.family, sock.type) as connection:
                    connection.shutdown(socket.SHUT_WR)
        if not self.blocked:  # else the client has request_timeout to read the answer first
            self._arm(LINGER_SECONDS)

    def close_if_between_requests(self) -> None:
        """Close a connection that has no request under way: one still in its handshake at
        once, one between requests as TLS closes (its client then opens another elsewhere)."""
        if self.state == self.HANDSHAKE:
            self.abort()
        elif self.state in (self.IDLE, self.REQUEST) and self.waiting_for_first_byte():
            self._close()

    def waiting_for_first_byte(self) -> bool:
        return not self.ready and self.request is None and not self.head_bytes

    def _close(self) -> None:
        """Close as TLS closes: what was written, then close_notify; the connection no longer
        counts to any bound, while TLS waits (``ssl_shutdown_timeout``) for the client's."""
        self._disarm()
        self.transport.close()
        self._gone()

    def abort(self) -> None:
        """Close at once, dropping what is unsent."""
        if self.opening is not None:
            self.opening.cancel()
        elif self.transport is not None:
            self.transport.abort()
        self._gone()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()

    def _gone(self) -> None:
        if not self.closed:
            self.closed = True
            self._disarm()
            self.server.forget(self)

    def _arm(self, seconds: float, *, writing: bool = False) -> None:
        self._disarm()
        self.writing = writing
        self.timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        reason = {self.HANDSHAKE: "handshake_timeout", self.REQUEST: "request_timeout"}.get(
            self.state
        )
        if self.writing:
            reason = "response_timeout"
        if reason is not None:
            self.server.dropped.labels(reason=reason).inc()
        self.abort()


def _call(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> _Answer:
    """The WSGI app's whole answer to ``environ``: status, headers, body."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return _no_write

    try:
        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception:
        _log.exception("%s %s failed", environ["REQUEST_METHOD"], environ["PATH_INFO"])
        body = json.dumps({"error": "internal error"}).encode()
        return "500 Internal Server Error", [("Content-Type", "application/json")], body
    return started[0], started[1], body


def _no_write(data: bytes) -> None:
    """WSGI's ``write`` callable: the CA's app returns its body instead (PEP 3333)."""
    raise NotImplementedError("write() is not supported: return the body")
