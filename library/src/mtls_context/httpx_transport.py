"""httpx over mTLS with certificates that reload from a certificate directory (needs httpx).

::

    from mtls_context.httpx_transport import async_client, client

    with client("/var/run/hello-mtls") as c:
        r = c.get("https://hello.default.svc:8443/")
        tls_info(r)   # TLSInfo(server_serial=..., client_serial=...)
    async with async_client("/var/run/hello-mtls") as c:
        await c.get("https://hello.default.svc:8443/")

New requests go through a connection pool built on the current context; when the context
changes, a new pool takes new requests and the old one is closed once the responses it is
still streaming are closed. The async client never reads certificate files on the event loop.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from mtls_context.contexts import MTLSContext, Side
from mtls_context.identity import TLSInfo, serial
from mtls_context.reloading import DEFAULT_CHECK_INTERVAL, ReloadingContext

__all__ = ["AsyncReloadingTransport", "ReloadingTransport", "async_client", "client", "tls_info"]


def client(
    cert_dir: str | os.PathLike[str],
    *,
    check_interval: float = DEFAULT_CHECK_INTERVAL,
    peers: Sequence[str] = (),
    **kwargs: Any,
) -> httpx.Client:
    """An ``httpx.Client`` over mTLS from ``cert_dir``; the environment is not consulted.

    ``peers``: the server's SPIFFE ID or patterns, as in `mtls_context.requests_adapter.session`.

    Raises:
        ValueError: if ``cert_dir`` does not hold a valid certificate set.
        OSError: if it cannot be read.
    """
    contexts = ReloadingContext(
        Path(cert_dir), Side.CLIENT, check_interval=check_interval, peers=peers
    )
    return httpx.Client(transport=ReloadingTransport(contexts), trust_env=False, **kwargs)


def async_client(
    cert_dir: str | os.PathLike[str],
    *,
    check_interval: float = DEFAULT_CHECK_INTERVAL,
    peers: Sequence[str] = (),
    **kwargs: Any,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` over mTLS from ``cert_dir`` (files are read off the loop).

    Raises:
        ValueError: if ``cert_dir`` does not hold a valid certificate set.
        OSError: if it cannot be read.
    """
    contexts = ReloadingContext(
        Path(cert_dir), Side.CLIENT, check_interval=check_interval, peers=peers, background=True
    )
    return httpx.AsyncClient(transport=AsyncReloadingTransport(contexts), trust_env=False, **kwargs)


def tls_info(response: httpx.Response) -> TLSInfo | None:
    """Server and client certificate serials of the connection that carried a response of a
    `client` or an `async_client` (None for a connection that is closed already)."""
    stream = response.extensions.get("network_stream")
    tls = stream.get_extra_info("ssl_object") if stream is not None else None
    context = getattr(tls, "context", None)
    if tls is None or not isinstance(context, MTLSContext):
        return None
    peer = tls.getpeercert()
    return TLSInfo(serial(peer), context.certificate.serial) if peer else None


_Pool = TypeVar("_Pool", httpx.HTTPTransport, httpx.AsyncHTTPTransport)


class _Pools(Generic[_Pool]):
    """One pool per context generation; an old pool closes when its last response does."""

    def __init__(self, contexts: ReloadingContext, make: Callable[[MTLSContext], _Pool]) -> None:
        self.contexts = contexts
        self._make: Callable[[MTLSContext], _Pool] = make
        self._lock = threading.Lock()
        self._context: MTLSContext | None = None
        self._current: _Pool | None = None
        self._in_flight: dict[int, int] = {}
        self._retired: dict[int, _Pool] = {}

    def take(self) -> tuple[_Pool, list[_Pool]]:
        """The pool for a new request (counted in flight), and old pools now idle to close."""
        context = self.contexts.current()
        with self._lock:
            if context is not self._context:
                if self._current is not None:
                    self._retired[id(self._current)] = self._current
                self._context, self._current = context, self._make(context)
            pool = self._current
            assert pool is not None
            self._in_flight[id(pool)] = self._in_flight.get(id(pool), 0) + 1
            return pool, self._idle_retired()

    def release(self, pool: _Pool) -> list[_Pool]:
        """One request on ``pool`` is done; old pools now idle, to close."""
        with self._lock:
            self._in_flight[id(pool)] -= 1
            return self._idle_retired()

    def close_all(self) -> list[_Pool]:
        with self._lock:
            pools = list(self._retired.values())
            if self._current is not None:
                pools.append(self._current)
            self._retired.clear()
            self._current = self._context = None
            return pools

    def _idle_retired(self) -> list[_Pool]:
        idle = [p for key, p in self._retired.items() if not self._in_flight.get(key)]
        for pool in idle:
            del self._retired[id(pool)]
            self._in_flight.pop(id(pool), None)
        return idle


class ReloadingTransport(httpx.BaseTransport):
    """An httpx transport whose connections use the current context of a `ReloadingContext`."""

    def __init__(self, contexts: ReloadingContext, **transport_kwargs: Any) -> None:
        self._pools: _Pools[httpx.HTTPTransport] = _Pools(
            contexts, lambda context: httpx.HTTPTransport(verify=context, **transport_kwargs)
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        pool, idle = self._pools.take()
        for old in idle:
            old.close()
        try:
            response = pool.handle_request(request)
        except BaseException:
            self._done(pool)
            raise
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)
        response.stream = _SyncStream(stream, lambda: self._done(pool))
        return response

    def close(self) -> None:
        for pool in self._pools.close_all():
            pool.close()

    def _done(self, pool: httpx.HTTPTransport) -> None:
        for old in self._pools.release(pool):
            old.close()


class AsyncReloadingTransport(httpx.AsyncBaseTransport):
    """The async twin of `ReloadingTransport`; give it a ``background=True`` context."""

    def __init__(self, contexts: ReloadingContext, **transport_kwargs: Any) -> None:
        self._pools: _Pools[httpx.AsyncHTTPTransport] = _Pools(
            contexts, lambda context: httpx.AsyncHTTPTransport(verify=context, **transport_kwargs)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool, idle = self._pools.take()
        for old in idle:
            await old.aclose()
        try:
            response = await pool.handle_async_request(request)
        except BaseException:
            await self._done(pool)
            raise
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _AsyncStream(stream, lambda: self._done(pool))
        return response

    async def aclose(self) -> None:
        for pool in self._pools.close_all():
            await pool.aclose()

    async def _done(self, pool: httpx.AsyncHTTPTransport) -> None:
        for old in self._pools.release(pool):
            await old.aclose()


class _SyncStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, on_close: Any) -> None:
        self._inner, self._on_close, self._closed = inner, on_close, False

    def __iter__(self) -> Iterator[bytes]:
        yield from self._inner

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            if not self._closed:
                self._closed = True
                self._on_close()


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, on_close: Any) -> None:
        self._inner, self._on_close, self._closed = inner, on_close, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if not self._closed:
                self._closed = True
                await self._on_close()
