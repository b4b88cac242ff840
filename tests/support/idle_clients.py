"""Connections that keep a server waiting: the idle, slow and half-open clients of a denial of
service, held from the test process on 127.0.0.1.

Three kinds, each stuck at one stage of an HTTPS exchange (from 127.0.0.1, or another loopback
address given to `IdleClients.open`):

* ``one-byte``: plain TCP that sent one byte (the start of a TLS record) and went quiet, so the
  server's TLS handshake waits for the rest;
* ``tls-silent``: a complete TLS handshake, then nothing: the server waits for a request;
* ``slow-head``: a complete handshake and half a request head, then one more byte every second
  (slowloris): a server that only bounds each read never gives up on it.

Every loop here is bounded (a deadline, or the connections closing).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

KINDS = ("one-byte", "tls-silent", "slow-head")
_SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@dataclass
class Held:
    """One held connection and when the server closed it (None: still open)."""

    kind: str
    port: int
    sock: socket.socket
    opened: float
    closed: float | None = None
    handshaken: bool = False


class IdleClients:
    """Connections held open to the ports given to `open`; `close` ends them all."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.held: list[Held] = []
        self._context = context
        # One socket is used by two threads (the trickle and `open_count`): each I/O holds it.
        self._lock = threading.RLock()

    def open(
        self,
        port: int,
        per_kind: int,
        handshake_within: float,
        kinds: tuple[str, ...] = KINDS,
        source: str = "127.0.0.1",
    ) -> None:
        """Open ``per_kind`` connections of each of ``kinds`` from ``source`` to
        127.0.0.1:``port``.

        The TLS handshakes run side by side for at most ``handshake_within`` seconds; a
        connection whose handshake the server has not finished by then stays held as it is
        (it is idle too). The one-byte connections come last, so they cannot stall the others'
        handshakes on a server that handshakes in order.
        """
        tls = []
        for kind in ("tls-silent", "slow-head"):
            for _ in range(per_kind if kind in kinds else 0):
                raw = socket.create_connection(
                    ("127.0.0.1", port), timeout=10, source_address=(source, 0)
                )
                raw.setblocking(False)
                wrapped = self._context.wrap_socket(
                    raw, server_hostname="127.0.0.1", do_handshake_on_connect=False
                )
                tls.append(Held(kind, port, wrapped, time.monotonic()))
        self._handshake(tls, time.monotonic() + handshake_within)
        for held in tls:
            if held.kind == "slow-head" and held.handshaken:
                with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    held.sock.send(_SLOW_HEAD)
        for _ in range(per_kind if "one-byte" in kinds else 0):
            raw = socket.create_connection(
                ("127.0.0.1", port), timeout=10, source_address=(source, 0)
            )
            raw.sendall(b"\x16")
            raw.setblocking(False)
            tls.append(Held("one-byte", port, raw, time.monotonic()))
        with self._lock:
            self.held += tls

    @contextlib.contextmanager
    def trickling(self) -> Iterator[None]:
        """Send one more byte of the slow heads every second while the block runs."""
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(1.0):
                for held in self._open("slow-head"):
                    with self._lock:
                        try:
                            held.sock.send(b"a")
                        except (ssl.SSLWantWriteError, BlockingIOError):
                            pass
                        except OSError:
                            self._closed(held)

        thread = threading.Thread(target=trickle, name="slow-heads", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)

    def open_count(self) -> int:
        """How many held connections the server has not closed yet (each one is checked)."""
        for held in self._open():
            with self._lock:
                if _closed_by_peer(held.sock):
                    self._closed(held)
        return len(self._open())

    def stalled_handshakes(self) -> int:
        """How many TLS connections did not finish their handshake in `open`."""
        with self._lock:
            return sum(1 for h in self.held if h.kind != "one-byte" and not h.handshaken)

    def seconds_to_close(self, kind: str) -> list[float]:
        """For each closed connection of ``kind``: seconds from opening to the server's close."""
        with self._lock:
            return [h.closed - h.opened for h in self.held if h.kind == kind and h.closed]

    def close(self) -> None:
        with self._lock:
            for held in self.held:
                held.sock.close()

    def _open(self, kind: str | None = None) -> list[Held]:
        with self._lock:
            return [h for h in self.held if h.closed is None and kind in (None, h.kind)]

    def _closed(self, held: Held) -> None:
        with self._lock:
            if held.closed is None:
                held.closed = time.monotonic()

    def _handshake(self, pending: list[Held], deadline: float) -> None:
        with selectors.DefaultSelector() as selector:
            while pending and time.monotonic() < deadline:
                waiting = []
                for held in pending:
                    assert isinstance(held.sock, ssl.SSLSocket)
                    try:
                        held.sock.do_handshake()
                        held.handshaken = True
                    except ssl.SSLWantReadError:
                        waiting.append((held, selectors.EVENT_READ))
                    except ssl.SSLWantWriteError:
                        waiting.append((held, selectors.EVENT_WRITE))
                    except OSError:
                        held.closed = time.monotonic()
                for held, event in waiting:
                    selector.register(held.sock, event)
                if waiting:
                    selector.select(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
                for held, _ in waiting:
                    selector.unregister(held.sock)
                pending = [held for held, _ in waiting]


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer closed or reset ``sock`` (non-blocking); reads and drops any data."""
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return False
    except OSError:
        return True
