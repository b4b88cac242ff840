"""One way for every tier to wait: poll for the condition within a generous bound.

A test never sleeps a fixed time and then asserts what a process must have done by then: on a
loaded machine "by then" is a guess. It polls for the condition, fails with what it waited for
once the bound is over, and, where the time itself is the point, reports it (a benchmark holds
the target, not a timed assertion).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# What a probe that runs a command (kubectl, a client process) raises while the answer is not
# there yet; the last one is shown when the bound is over.
COMMAND_ERRORS: tuple[type[Exception], ...] = (RuntimeError, subprocess.TimeoutExpired)


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 1.0,
    retry_on: tuple[type[Exception], ...] = COMMAND_ERRORS,
) -> T:
    """Poll ``probe`` until it returns something truthy, and return that.

    Args:
        what: what is awaited, for the failure message ("the server to serve serial 5").
        probe: returns the awaited value, or something falsy while it is not there yet.
        timeout: seconds after which the wait fails (generous: it only bounds a failure).
        interval: seconds between probes.
        retry_on: exceptions that mean "not yet"; any other one fails the wait at once.

    Raises:
        AssertionError: ``timeout`` passed without a truthy answer.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
        except retry_on as error:
            last_error, value = error, None
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")


def elapsed_until(what: str, probe: Callable[[], object], timeout: float, interval: float) -> float:
    """Poll like :func:`wait_until` and return how many seconds the condition took to hold."""
    start = time.monotonic()
    wait_until(what, probe, timeout, interval)
    return time.monotonic() - start


def accepts(port: int) -> bool:
    """A probe: whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
