"""asyncio: ``asyncio.start_server`` given one ReloadingServerContext; HTTP/1.1 by hand.

Run: ``python examples/asyncio_server.py`` (``HELLO_MTLS_CERT_DIR``, ``HELLO_MTLS_BIND``).
It says the client certificate's serial in ``X-Client-Serial``.
"""

import asyncio
from pathlib import Path

from mtls_context import ReloadingServerContext, options


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peercert")  # verified: the context requires a client cert
    serial = format(int(peer["serialNumber"], 16), "x").encode()
    body = b"hello from asyncio\n"
    try:
        while request := await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nX-Client-Serial: %s\r\n" % serial)
            writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            if b"connection: close" in request.lower():
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    context = ReloadingServerContext(
        Path(options.cert_dir()), check_interval=options.check_interval()
    )
    host, port = options.bind()
    server = await asyncio.start_server(handle, host, port, ssl=context)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
