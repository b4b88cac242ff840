"""The command-line options every program on a certificate directory shares, each with its
``HELLO_MTLS_*`` environment variable: ``--cert-dir``, ``--check-interval``, ``--metrics-port`` and,
for a server, ``--bind`` and ``--allow`` (for a client, ``--server-id``); stdlib only.

::

    parser = argparse.ArgumentParser()
    options.add_common(parser, side=Side.SERVER)
    args = parser.parse_args()  # .cert_dir, .check_interval, .metrics_port, .bind, .allow

A program started without its command line (a gunicorn config, an app factory in a worker, a
recipe in ``examples/``) reads the same variables with :func:`cert_dir`, :func:`check_interval`,
:func:`bind`, :func:`allow`, :func:`server_id` and :func:`url`, so a value has one default and one
syntax wherever it is read.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from mtls_context.contexts import Side
from mtls_context.reloading import DEFAULT_CHECK_INTERVAL

__all__ = [
    "DEFAULT_BIND",
    "DEFAULT_CERT_DIR",
    "DEFAULT_URL",
    "Address",
    "add_common",
    "allow",
    "bind",
    "cert_dir",
    "check_interval",
    "federated_peers",
    "parse_allow",
    "parse_bind",
    "server_id",
    "url",
]

DEFAULT_CERT_DIR = "/var/run/hello-mtls"
DEFAULT_BIND = "0.0.0.0:8443"
DEFAULT_URL = "https://localhost:8443/"
_T = TypeVar("_T")
_BIND = "HELLO_MTLS_BIND"
_CERT_DIR = "HELLO_MTLS_CERT_DIR"
_CHECK_INTERVAL = "HELLO_MTLS_CHECK_INTERVAL"
_METRICS_PORT = "HELLO_MTLS_METRICS_PORT"
_ALLOW = "HELLO_MTLS_ALLOW"
_SERVER_ID = "HELLO_MTLS_SERVER_ID"
_URL = "HELLO_MTLS_URL"


class Address(NamedTuple):
    """Where a server listens: ``host`` without brackets, ``port``; ``str()`` writes it back as
    gunicorn and gRPC take it (``0.0.0.0:8443``, ``[::]:8443``)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_bind(text: str) -> Address:
    """A listening address as ``HELLO_MTLS_BIND`` and ``--bind`` write it: ``HOST:PORT``, an IPv6
    host in brackets.

    Raises:
        ValueError: ``'8443' is not HOST:PORT``.
    """
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT")
    return Address(host.removeprefix("[").removesuffix("]"), int(port))


def parse_allow(text: str) -> list[str]:
    """An allow-list as ``HELLO_MTLS_ALLOW`` writes it: comma separated, blanks ignored."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _variable(name: str, default: str) -> str:
    """The text of variable ``name``; unset or empty: ``default``."""
    return os.environ.get(name) or default


def cert_dir() -> str:
    """``HELLO_MTLS_CERT_DIR``, else ``/var/run/hello-mtls``."""
    return _variable(_CERT_DIR, DEFAULT_CERT_DIR)


def check_interval() -> float:
    """``HELLO_MTLS_CHECK_INTERVAL`` in seconds, else the library's default.

    Raises:
        ValueError: the variable is not a number.
    """
    return float(_variable(_CHECK_INTERVAL, str(DEFAULT_CHECK_INTERVAL)))


def allow() -> list[str]:
    """``HELLO_MTLS_ALLOW``: the DNS names and SPIFFE IDs a server greets; empty: every verified
    client."""
    return parse_allow(_variable(_ALLOW, ""))


def bind() -> Address:
    """``HELLO_MTLS_BIND`` (``HOST:PORT``, ``[::]:8443`` for IPv6), else ``0.0.0.0:8443``: where a
    server listens, as ``(host, port)``.

    Raises:
        ValueError: the variable is not ``HOST:PORT``.
    """
    try:
        return parse_bind(_variable(_BIND, DEFAULT_BIND))
    except ValueError as e:
        raise ValueError(f"{_BIND}: {e}") from None


def server_id() -> list[str]:
    """``HELLO_MTLS_SERVER_ID``: the SPIFFE IDs or ``/*`` patterns a client requires of the
    server instead of its host name (comma separated); empty: the host name is checked."""
    return parse_allow(_variable(_SERVER_ID, ""))


def url() -> str:
    """``HELLO_MTLS_URL``, else ``https://localhost:8443/``: what a client calls."""
    return _variable(_URL, DEFAULT_URL)


def federated_peers(allow: Sequence[str]) -> list[str]:
    """The SPIFFE IDs and patterns of an allow-list: a server passes them to its context as
    ``peers``, so the clients of a federated trust domain they name get through TLS."""
    return [entry for entry in allow if entry.startswith("spiffe://")]


def add_common(parser: argparse.ArgumentParser, *, side: Side) -> None:
    """Add ``--cert-dir``, ``--check-interval``, ``--metrics-port`` and, for ``Side.SERVER``,
    ``--bind`` and ``--allow`` (for ``Side.CLIENT``, ``--server-id``) to ``parser``, each
    defaulting to its environment variable."""
    parser.add_argument(
        "--cert-dir",
        default=cert_dir(),
        help=f"certificate directory (env {_CERT_DIR}; default %(default)s)",
    )
    # String defaults go through ``type``, so a bad variable is refused naming the option.
    parser.add_argument(
        "--check-interval",
        type=float,
        default=_variable(_CHECK_INTERVAL, str(DEFAULT_CHECK_INTERVAL)),
        help="check the certificate directory at most this often, in seconds "
        f"(env {_CHECK_INTERVAL}; default %(default)s)",
    )
    what = "each process serves" if side is Side.SERVER else "the client presents"
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_variable(_METRICS_PORT, "0"),
        help=f"serve Prometheus metrics of the certificate {what} on this port, all addresses "
        f"(env {_METRICS_PORT}; default 0: off)",
    )
    if side is Side.SERVER:
        parser.add_argument(
            "--bind",
            type=_as_option(parse_bind),
            default=_variable(_BIND, DEFAULT_BIND),
            help=f"HOST:PORT to listen on (env {_BIND}; default %(default)s)",
        )
        parser.add_argument(
            "--allow",
            action=_ReplaceDefault,
            default=allow(),
            help="DNS name, SPIFFE ID or SPIFFE ID pattern (spiffe://td/ns/shop/*) allowed to "
            "get a hello; a SPIFFE entry of a federated trust domain also lets its clients "
            f"through TLS; repeatable (env {_ALLOW}, comma separated; default: every verified "
            "client of our CA)",
        )
    else:
        parser.add_argument(
            "--server-id",
            action=_ReplaceDefault,
            default=server_id(),
            help="SPIFFE ID or pattern the server must present, checked instead of its host "
            f"name (it may be of a federated trust domain); repeatable (env {_SERVER_ID}, "
            "comma separated; default: the host name is checked)",
        )


def _as_option(parse: Callable[[str], _T]) -> Callable[[str], _T]:
    """``parse`` for argparse: its ``ValueError`` message becomes the option's error."""

    def parse_option(text: str) -> _T:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse_option


class _ReplaceDefault(argparse.Action):
    """``append``, except that the first use replaces the default (the environment's list), so
    the command line overrides the variable instead of adding to it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest)
        items = [] if current is self.default else list(current)
        setattr(namespace, self.dest, [*items, values])
