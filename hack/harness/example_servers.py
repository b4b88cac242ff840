"""The server recipes of ``examples/`` as the tests and ``make bench-tls`` start them: one
process per stack on 127.0.0.1, configured through the ``HELLO_MTLS_*`` variables the recipes
read (``mtls_context.options``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BIN = Path(sys.executable).parent
STACKS = ("asyncio", "uvicorn", "aiohttp", "hypercorn", "gunicorn-sync", "gunicorn-asgi")
# What each stack's ``GET /`` says: the app it serves (gunicorn's asgi worker and hypercorn serve
# the FastAPI app, the sync worker the Flask app).
HELLO = {
    "asyncio": "hello from asyncio\n",
    "uvicorn": "hello from fastapi\n",
    "aiohttp": "hello from aiohttp\n",
    "hypercorn": "hello from fastapi\n",
    "gunicorn-sync": "hello from flask\n",
    "gunicorn-asgi": "hello from fastapi\n",
}


def argv(stack: str, port: int) -> list[str]:
    """The command that runs ``stack``'s recipe (gunicorn: ``gunicorn_conf.py`` with one worker
    of that class on ``port``, without the control socket several servers of one user would
    share); the others listen where :func:`env` says."""
    if stack not in STACKS:
        raise ValueError(f"unknown stack {stack!r} (expected one of {STACKS})")
    if stack.startswith("gunicorn-"):
        worker = stack.removeprefix("gunicorn-")
        app = "fastapi_app:app" if worker == "asgi" else "flask_app:app"
        return [
            str(BIN / "gunicorn"),
            *("-c", str(EXAMPLES / "gunicorn_conf.py"), "--chdir", str(EXAMPLES)),
            *("--worker-class", worker, "--workers", "1", "--no-control-socket"),
            *("--bind", f"127.0.0.1:{port}"),
            app,
        ]
    return [sys.executable, str(EXAMPLES / f"{stack}_server.py")]


def env(
    port: int, cert_dir: Path, check_interval: float, allow: Sequence[str] = ()
) -> dict[str, str]:
    """The variables a recipe reads: where to listen, the certificates and the allow-list."""
    return {
        "HELLO_MTLS_BIND": f"127.0.0.1:{port}",
        "HELLO_MTLS_CERT_DIR": str(cert_dir),
        "HELLO_MTLS_CHECK_INTERVAL": str(check_interval),
        "HELLO_MTLS_ALLOW": ",".join(allow),
    }
