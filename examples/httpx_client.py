"""httpx, sync and async: clients over reloading mTLS; GET ``HELLO_MTLS_URL`` with each.

Run: ``python examples/httpx_client.py`` (``HELLO_MTLS_CERT_DIR``, ``HELLO_MTLS_URL``).
A new context gets a new connection pool; the old pool closes when its last response does.
"""

import asyncio

from mtls_context import options
from mtls_context.httpx_transport import async_client, client

URL = options.url()


async def call() -> None:
    async with async_client(options.cert_dir()) as c:  # an httpx.AsyncClient
        print((await c.get(URL)).text, end="")


with client(options.cert_dir()) as c:  # an httpx.Client
    print(c.get(URL).text, end="")
asyncio.run(call())
