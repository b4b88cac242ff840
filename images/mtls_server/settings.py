"""The example server's own settings beside the library's shared ones (`mtls_context.options`):
the stack and the worker counts, each with its ``HELLO_MTLS_*`` variable and one default.

``hello-mtls-server`` reads them with :func:`add_arguments`; gunicorn started on
`mtls_server.gunicorn_conf` without that command reads the same variables with :func:`workers`
and :func:`threads`.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["STACKS", "add_arguments", "threads", "workers"]

STACKS = ("flask", "fastapi")
_STACK = "HELLO_MTLS_STACK"
_WORKERS = "HELLO_MTLS_WORKERS"
_THREADS = "HELLO_MTLS_THREADS"
_DEFAULTS = {_STACK: STACKS[0], _WORKERS: "2", _THREADS: "4"}


def _variable(name: str) -> str:
    return os.environ.get(name) or _DEFAULTS[name]


def workers() -> int:
    """``HELLO_MTLS_WORKERS``, else 2: gunicorn or uvicorn worker processes.

    Raises:
        ValueError: the variable is not a whole number.
    """
    return int(_variable(_WORKERS))


def threads() -> int:
    """``HELLO_MTLS_THREADS``, else 4: threads per gunicorn worker.

    Raises:
        ValueError: the variable is not a whole number.
    """
    return int(_variable(_THREADS))


def _stack(text: str) -> str:
    if text not in STACKS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(STACKS)}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--stack``, ``--workers`` and ``--threads``, each defaulting to its variable (a bad
    variable is refused naming the option, as `mtls_context.options` does)."""
    parser.add_argument(
        "--stack",
        type=_stack,
        default=_variable(_STACK),
        help=f"flask: gunicorn + Flask; fastapi: uvicorn + FastAPI (env {_STACK}; default "
        "%(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=_variable(_WORKERS),
        help=f"gunicorn or uvicorn worker processes (env {_WORKERS}; default %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=_variable(_THREADS),
        help=f"threads per gunicorn worker (env {_THREADS}; default %(default)s)",
    )
