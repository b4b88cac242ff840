"""A FastAPI app that greets the verified client, refused (403) unless it is on
``HELLO_MTLS_ALLOW`` when that is set. Served by ``uvicorn_server.py``, ``hypercorn_server.py``
or gunicorn's asgi worker (``gunicorn_conf.py``); only uvicorn with ``PeerCertH11Protocol``
hands the client certificate to the app (``/whoami``).
"""

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse

from mtls_context import options
from mtls_context.starlette_peer import require_peer

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
def hello() -> str:
    return "hello from fastapi\n"


@app.get("/whoami", response_class=PlainTextResponse)
def whoami(who: str = Depends(require_peer(allow=options.allow()))) -> str:
    return f"{who}\n"
