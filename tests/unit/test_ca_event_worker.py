"""A signer's signing loop without a server: the WSGI environ it builds from a parsed request
and how it calls the app. Its deadlines and bounds are proven against the real service
(tests/integration/test_ca_idle_clients.py), its answers by the fuzz (test_ca_fuzz.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from mtls_ca.event_worker import _call, _Connection, _PeerCertificate, _Request
from mtls_context.identity import wsgi_peer_cert


def _environ(url: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> dict[str, Any]:
    request = _Request()
    request.url, request.headers, request.body = bytearray(url), headers, bytearray(body)
    request.method, request.version = "POST", "1.1"
    cert = {"subject": ((("commonName", "operator"),),)}
    base = {"SERVER_PORT": "8444", "gunicorn.socket": _PeerCertificate(cert)}
    return _Connection._environ(SimpleNamespace(environ=base), request)  # type: ignore[arg-type]


def test_the_environ_is_what_a_wsgi_server_gives() -> None:
    environ = _environ(
        b"/a%20b?x=1",
        [
            (b"Content-Type", b"application/json"),
            (b"Content-Length", b"2"),
            (b"X-Seen", b"one"),
            (b"x-seen", b"two"),
        ],
        b"{}",
    )
    assert environ["PATH_INFO"] == "/a b"
    assert environ["QUERY_STRING"] == "x=1"
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["CONTENT_TYPE"] == "application/json"
    assert environ["CONTENT_LENGTH"] == "2"
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert environ["HTTP_X_SEEN"] == "one,two"
    assert environ["wsgi.input"].read() == b"{}"
    # The app reads the client certificate where it reads gunicorn's.
    assert wsgi_peer_cert(environ) == {"subject": ((("commonName", "operator"),),)}


class _Body:
    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"a":'
        yield b"1}"

    def close(self) -> None:
        self.closed = True


def test_the_app_answers_whole_and_its_body_is_closed() -> None:
    body = _Body()

    def app(environ: dict[str, Any], start_response: Any) -> _Body:
        start_response("201 Created", [("Content-Type", "application/json")])
        return body

    assert _call(app, _environ(b"/sign", [])) == (
        "201 Created",
        [("Content-Type", "application/json")],
        b'{"a":1}',
    )
    assert body.closed


def test_an_app_that_fails_gets_a_json_500_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="mtls_ca"):
        status, headers, body = _call(app, _environ(b"/sign", []))
    assert status == "500 Internal Server Error"
    assert headers == [("Content-Type", "application/json")]
    assert body == b'{"error": "internal error"}'
    assert "POST /sign failed" in caplog.text
