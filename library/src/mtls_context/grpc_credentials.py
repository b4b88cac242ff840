"""gRPC over mTLS with certificates that reload from a certificate directory (needs grpcio).

::

    server = grpc.server(executor)
    server.add_secure_port("[::]:8443", server_credentials("/var/run/hello-mtls"))

    channel = ReloadingChannel("hello.default.svc:8443", "/var/run/hello-mtls")
    stub = HelloStub(channel)

Server: ``dynamic_ssl_server_credentials`` with client certificates required. gRPC asks the
fetcher before every new connection's handshake, on a core thread with the GIL held; the fetcher
only compares the current generation (built off that thread) with the one it handed over last,
so it is O(1), and hands over a new certificate, key and client trust bundle when they changed.
Connections already open keep theirs.

What the TLS policy can and cannot enforce here: gRPC uses its own TLS stack (BoringSSL) and
accepts TLS 1.2 and 1.3 only, whatever the policy says; it has no version floor setting, so the
``modern`` profile (TLS 1.3 only) is not enforced. TLS 1.2 suites can only be set process-wide
with ``GRPC_SSL_CIPHER_SUITES`` before gRPC starts; its default is the ECDHE + AEAD list of the
intermediate profile. The key exchange groups are BoringSSL's defaults.

Client: `ReloadingChannel` builds a new channel when the client's files change; calls already
made finish on the old channel, which is closed ``grace`` seconds later.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from mtls_context.contexts import Certificate, MTLSContext, Side
from mtls_context.layout import CA, CERT, KEY
from mtls_context.reloading import DEFAULT_CHECK_INTERVAL, ReloadingContext

__all__ = ["ReloadingChannel", "server_credentials"]


def server_credentials(
    cert_dir: str | os.PathLike[str], *, check_interval: float = DEFAULT_CHECK_INTERVAL
) -> grpc.ServerCredentials:
    """Server credentials that follow ``cert_dir``; client certificates are required.

    Raises:
        ValueError: if ``cert_dir`` does not hold a valid certificate set.
        OSError: if it cannot be read.
    """
    reloading = ReloadingContext(
        Path(cert_dir), Side.SERVER, check_interval=check_interval, background=True
    )
    handed_over = [reloading.current()]

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        context = reloading.current()
        if context is handed_over[0]:
            return None
        handed_over[0] = context
        return _configuration(context)

    return grpc.dynamic_ssl_server_credentials(
        _configuration(handed_over[0]),
        fetch,  # type: ignore[arg-type]  # the stubs omit None ("no change"), which gRPC documents
        require_client_authentication=True,
    )


def _configuration(context: MTLSContext) -> grpc.ServerCertificateConfiguration:
    files = context.files
    return grpc.ssl_server_certificate_configuration(
        [(files[KEY], files[CERT])], root_certificates=files[CA]
    )


class ReloadingChannel(grpc.Channel):
    """A ``grpc.Channel`` over mTLS from ``cert_dir`` that moves to a new channel on change.

    Each call goes to the channel of the current generation; a replaced channel is closed
    ``grace`` seconds later (give it your longest deadline), so calls in flight finish.
    """

    def __init__(
        self,
        target: str,
        cert_dir: str | os.PathLike[str],
        *,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        grace: float = 60.0,
        options: list[tuple[str, Any]] | None = None,
    ) -> None:
        self._target, self._grace, self._options = target, grace, options or []
        self._reloading = ReloadingContext(
            Path(cert_dir), Side.CLIENT, check_interval=check_interval, background=True
        )
        self._lock = threading.Lock()
        self._context = self._reloading.current()
        self._channel = self._open(self._context)
        self._closing: list[threading.Timer] = []

    @property
    def certificate(self) -> Certificate:
        """The client certificate new calls present."""
        return self._reloading.current().certificate

    def current(self) -> grpc.Channel:
        """The channel new calls use."""
        context = self._reloading.current()
        if context is not self._context:
            with self._lock:
                if context is not self._context:
                    old, self._channel = self._channel, self._open(context)
                    self._context = context
                    timer = threading.Timer(self._grace, old.close)
                    timer.daemon = True
                    timer.start()
                    self._closing.append(timer)
        return self._channel

    def _open(self, context: MTLSContext) -> grpc.Channel:
        files = context.files
        credentials = grpc.ssl_channel_credentials(files[CA], files[KEY], files[CERT])
        return grpc.secure_channel(self._target, credentials, options=self._options)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Call(self, lambda channel: channel.unary_unary(method, *args, **kwargs))

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Call(self, lambda channel: channel.unary_stream(method, *args, **kwargs))

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Call(self, lambda channel: channel.stream_unary(method, *args, **kwargs))

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Call(self, lambda channel: channel.stream_stream(method, *args, **kwargs))

    def subscribe(self, callback: Callable[..., Any], try_to_connect: bool = False) -> None:
        self.current().subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Callable[..., Any]) -> None:
        self.current().unsubscribe(callback)

    def close(self) -> None:
        for timer in self._closing:
            timer.cancel()
        self._channel.close()

    def __enter__(self) -> ReloadingChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Call:
    """A multi-callable bound to whichever channel is current when it is called."""

    def __init__(self, owner: ReloadingChannel, make: Callable[[grpc.Channel], Any]) -> None:
        self._owner, self._make = owner, make
        self._channel: grpc.Channel | None = None
        self._callable: Any = None

    def _current(self) -> Any:
        channel = self._owner.current()
        if channel is not self._channel:
            self._channel, self._callable = channel, self._make(channel)
        return self._callable

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._current()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # with_call, future
        return getattr(self._current(), name)
