"""The aiohttp client over mTLS with certificates that reload (needs aiohttp).

::

    from mtls_context.aiohttp_client import MTLSClientSession

    async with MTLSClientSession("/var/run/hello-mtls") as session:
        async with session.get("https://hello.default.svc:8443/") as response:
            print(await response.text())

Every request is made with the current context. aiohttp keys its pooled connections by that
context, so a new context gets new connections while requests on the old ones finish; the old
connections then close when idle (``keepalive_timeout``). Certificate files are read off the
event loop.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from mtls_context.contexts import Side
from mtls_context.reloading import DEFAULT_CHECK_INTERVAL, ReloadingContext

__all__ = ["MTLSClientSession"]


class MTLSClientSession:
    """A thin wrapper of ``aiohttp.ClientSession`` that passes ``ssl=`` the current context.

    ``ssl=`` of your own is refused, and so are plain ``http://`` URLs; the environment
    (proxies, netrc) is not consulted. The wrapped session is ``session``.
    """

    def __init__(
        self,
        cert_dir: str | os.PathLike[str],
        *,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        **session_kwargs: Any,
    ) -> None:
        """Load ``cert_dir`` now; call it inside a running event loop (aiohttp needs one).

        Raises:
            ValueError: if ``cert_dir`` does not hold a valid certificate set.
            OSError: if it cannot be read.
        """
        self.contexts = ReloadingContext(
            Path(cert_dir), Side.CLIENT, check_interval=check_interval, background=True
        )
        self.session = aiohttp.ClientSession(trust_env=False, **session_kwargs)

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """Like ``ClientSession.request``, with this session's current context."""
        if "ssl" in kwargs:
            raise ValueError(
                "ssl= is not allowed: the context comes from the certificate directory"
            )
        if not url.startswith("https://"):
            raise ValueError(f"{url}: plain HTTP refused, use https://")
        return self.session.request(method, url, ssl=self.contexts.current(), **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> MTLSClientSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
