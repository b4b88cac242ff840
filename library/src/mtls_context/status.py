"""What each reloading context serves or presents, and how its last reload went.

``statuses()`` answers for this process. A server whose connections are served by worker
processes (gunicorn, uvicorn with workers) sets ``HELLO_MTLS_STATUS_DIR`` before it starts
them: every process then writes its statuses to ``<dir>/<pid>.json`` whenever one changes, and
``read_statuses(dir)`` in the parent reads those of every process still alive::

    for status in statuses():
        print(status.side, status.identity, status.serial, status.generation, status.error)
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["STATUS_DIR_ENV", "Status", "read_statuses", "statuses"]

STATUS_DIR_ENV = "HELLO_MTLS_STATUS_DIR"
"""The environment variable naming the directory each process publishes its statuses in."""


@dataclass(frozen=True)
class Status:
    """One reloading context: the certificate new connections get, and its reload history."""

    directory: str
    side: str
    """``server`` (the certificate it serves) or ``client`` (the one it presents)."""
    pid: int
    identity: str
    serial: str
    """Lowercase hex, as the CA prints it."""
    not_after: datetime
    generation: int
    """1 for the context built at start, one more for each context built since (a new version
    of the files, or a rebuild at max age)."""
    loaded_at: datetime
    """When the current generation was built."""
    error: str | None
    """Why the newest files on disk are not in use (None when they are)."""
    error_at: datetime | None
    """When that error was first seen."""
    crl_enforced: bool = False
    """Whether peers are checked against the directory's ``ca.crl``."""
    crl_stale: str | None = None
    """Why a ``ca.crl`` that is present is not enforced (`mtls_context.revocation`)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times in ISO 8601)."""
        document = asdict(self)
        for name in ("not_after", "loaded_at", "error_at"):
            if document[name] is not None:
                document[name] = document[name].isoformat()
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Status:
        """The inverse of `to_json`.

        Raises:
            KeyError, TypeError, ValueError: if ``document`` is not what `to_json` writes.
        """
        fields = dict(document)
        for name in ("not_after", "loaded_at", "error_at"):
            if fields[name] is not None:
                fields[name] = datetime.fromisoformat(fields[name])
        return cls(**fields)


_live: weakref.WeakSet[Any] = weakref.WeakSet()
_publish_lock = threading.Lock()


def _reset_after_fork() -> None:
    global _publish_lock
    _publish_lock = threading.Lock()  # a thread of the parent may have held it


os.register_at_fork(after_in_child=_reset_after_fork)


def statuses() -> list[Status]:
    """The status of every reloading context alive in this process."""
    return [context.status() for context in list(_live)]


def track(context: Any) -> None:
    """Count ``context`` (anything with a ``status()`` method) in `statuses` while it lives."""
    _live.add(context)


def changed() -> None:
    """Publish this process's statuses if ``HELLO_MTLS_STATUS_DIR`` is set; never raises."""
    directory = os.environ.get(STATUS_DIR_ENV)
    if not directory:
        return
    with _publish_lock:
        path = Path(directory, f"{os.getpid()}.json")
        temporary = path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps([s.to_json() for s in statuses()]))
            os.replace(temporary, path)
        except OSError:
            pass  # metrics are not worth failing a reload for; the parent shows the last file


def read_statuses(
    directory: str | os.PathLike[str], *, alive: Callable[[int], bool] | None = None
) -> list[Status]:
    """The statuses every living process published in ``directory``; files of processes that
    are gone are removed."""
    alive = alive or _alive
    found: list[Status] = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            pid = int(path.stem)
        except ValueError:
            continue
        if not alive(pid):
            path.unlink(missing_ok=True)
            continue
        try:
            found.extend(Status.from_json(d) for d in json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or not ours
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
