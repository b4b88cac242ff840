"""The aiohttp client over reloading mTLS; GET ``HELLO_MTLS_URL`` and print the answer.

Run: ``python examples/aiohttp_client.py`` (``HELLO_MTLS_CERT_DIR``, ``HELLO_MTLS_URL``).
"""

import asyncio

from mtls_context import options
from mtls_context.aiohttp_client import MTLSClientSession

URL = options.url()


async def call() -> None:
    async with MTLSClientSession(options.cert_dir()) as session:
        async with session.get(URL) as response:
            print(await response.text(), end="")


asyncio.run(call())
