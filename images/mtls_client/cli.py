"""``hello-mtls-client``: call an mTLS URL in a loop, one JSON line per request, with requests
(the default) or httpx."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import requests

from mtls_client import loop
from mtls_context import Certificate, ReloadingContext, Side, httpx_transport, options
from mtls_context.identity import TLSInfo
from mtls_context.requests_adapter import ReloadingAdapter, session, tls_info


def main(argv: list[str] | None = None) -> int:
    """Run the loop; exit status 1 if any request failed, 2 on bad arguments or certificates."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.library not in LIBRARIES:
        parser.error(
            f"--library (HELLO_MTLS_CLIENT_LIBRARY): {args.library!r} is not one of "
            + ", ".join(LIBRARIES)
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        caller = LIBRARIES[args.library](args.cert_dir, args.check_interval, args.server_id)
    except (OSError, ValueError) as e:
        print(f"hello-mtls-client: {args.cert_dir}: {e}", file=sys.stderr)
        return 2
    if args.metrics_port:
        loop.serve_metrics(args.metrics_port)
    with caller:
        return loop.run(
            lambda: {"time": loop.now(), "url": args.url, **caller.call(args.url, args.timeout)},
            args,
        )


class _Requests:
    """Calls through the library's reloading requests session."""

    def __init__(self, cert_dir: str, check_interval: float, server_id: Sequence[str]) -> None:
        self._session = session(cert_dir, check_interval=check_interval, peers=server_id)
        adapter = self._session.get_adapter("https://")
        assert isinstance(adapter, ReloadingAdapter)
        self._adapter = adapter

    def call(self, url: str, timeout: float) -> dict[str, object]:
        try:
            response = self._session.get(url, timeout=timeout)
        except (requests.RequestException, ValueError) as e:
            return _failed(e, self._adapter.certificate.serial)
        return _answered(
            response.status_code, response.text, tls_info(response), self._adapter.certificate
        )

    def __enter__(self) -> _Requests:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._session.close()


class _Httpx:
    """Calls through the library's reloading httpx client (`mtls_context.httpx_transport`)."""

    def __init__(self, cert_dir: str, check_interval: float, server_id: Sequence[str]) -> None:
        self._contexts = ReloadingContext(
            Path(cert_dir), Side.CLIENT, check_interval=check_interval, peers=server_id
        )
        self._client = httpx.Client(
            transport=httpx_transport.ReloadingTransport(self._contexts), trust_env=False
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise

    def call(self, url: str, timeout: float) -> dict[str, object]:
        try:
            response = self._client.get(url, timeout=timeout)
        except (httpx.HTTPError, ValueError) as e:
            return _failed(e, self._contexts.current().certificate.serial)
        return _answered(
            response.status_code,
            response.text,
            httpx_transport.tls_info(response),
            self._contexts.current().certificate,
        )

    def __enter__(self) -> _Httpx:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()


LIBRARIES: dict[str, Callable[[str, float, Sequence[str]], _Requests | _Httpx]] = {
    "requests": _Requests,
    "httpx": _Httpx,
}


def _answered(
    status: int, text: str, info: TLSInfo | None, certificate: Certificate
) -> dict[str, object]:
    return {
        "status": status,
        "body": text.strip(),
        "error": None if status < 400 else f"HTTP {status}",
        "server_serial": info.server_serial if info else None,
        "client_serial": info.client_serial if info else certificate.serial,
    }


def _failed(error: BaseException, client_serial: str) -> dict[str, object]:
    return {
        "status": None,
        "error": _reason(error),
        "server_serial": None,
        "client_serial": client_serial,
    }


def _reason(error: BaseException) -> str:
    """The innermost cause, which names the TLS or socket problem."""
    while True:
        inner = (
            error.__cause__
            or error.__context__
            or next((a for a in getattr(error, "args", ()) if isinstance(a, BaseException)), None)
        )
        if inner is None:
            return f"{type(error).__name__}: {error}"
        error = inner


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hello-mtls-client", description=__doc__)
    p.add_argument(
        "--url",
        default=options.url(),
        help="URL to call (env HELLO_MTLS_URL; default %(default)s)",
    )
    p.add_argument(
        "--library",
        default=os.environ.get("HELLO_MTLS_CLIENT_LIBRARY", "requests"),
        help="requests or httpx (env HELLO_MTLS_CLIENT_LIBRARY; default %(default)s)",
    )
    loop.add_arguments(p, call="request")
    return p
