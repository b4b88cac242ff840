"""A signer pod's side: the signing material fetched from the root holder, kept in memory.

A signer holds no state directory. It asks the root holder's ``POST /signing-material``
(`RootHolder.fetch`), over TLS that trusts only the roots it was given (the ``ca.crt`` of the
operator's credential Secret, the one key of it the signer mounts) and with its projected
ServiceAccount token as the bearer token, read afresh on every call because the kubelet
rotates it. The answer (certificates, settings and the signing intermediate's key; never a
root key) lives in a `MemoryStore` in each process: gunicorn's master fetches once before the
workers start (no material, no start), and every worker then fetches again every
``interval`` seconds in a thread (`Refresher`), to follow an intermediate renewal or a root
rotation. When the root holder cannot be reached the worker keeps what it holds and signs on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from .state import State

__all__ = ["MATERIAL_PATH", "MemoryStore", "Refresher", "RootHolder"]

MATERIAL_PATH = "/signing-material"
_log = logging.getLogger("mtls_ca")


@dataclass(frozen=True)
class RootHolder:
    """Where the signing material comes from and how the signer proves itself."""

    url: str
    """The root holder's material endpoint's base, ``https://HOST:PORT``."""
    roots: Path
    """The PEM roots the root holder's serving certificate must chain to."""
    token: Path
    """The projected ServiceAccount token (audience: the root holder's)."""
    timeout: float = 10.0

    def fetch(self) -> State:
        """The signing material now.

        Raises:
            OSError: if the root holder cannot be reached, refuses, or answers no usable state.
        """
        try:
            token = self.token.read_text().strip()
        except OSError as e:
            raise OSError(f"cannot read the signer's token {self.token}: {e}") from None
        session = requests.Session()
        session.trust_env = False  # only our roots count, and no proxy sees the answer
        try:
            response = session.post(
                self.url.rstrip("/") + MATERIAL_PATH,
                headers={"Authorization": f"Bearer {token}"},
                verify=str(self.roots),
                timeout=self.timeout,
            )
        except requests.RequestException as e:
            raise OSError(f"root holder {self.url}: {e}") from None
        finally:
            session.close()
        if response.status_code != 200:
            raise OSError(
                f"root holder {self.url}: HTTP {response.status_code}: {_error(response)}"
            )
        try:
            state = State.from_json(response.content)
        except ValueError as e:
            raise OSError(f"root holder {self.url}: {e}") from None
        if state.signer.intermediate_key is None:
            raise OSError(f"root holder {self.url}: the material lacks the intermediate's key")
        return state


class MemoryStore:
    """A `mtls_ca.state.Store` in this process's memory, filled by `set`; a signer never
    changes the state itself (`update` refuses)."""

    def __init__(
        self, state: State, location: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.location = location
        self._clock = clock
        self._lock = threading.Lock()
        self._state = state
        self._version = 0
        self.fetched_at = clock()
        """When the material held was last fetched (``clock``; the monotonic clock is the
        machine's, so a forked worker's view of its master's fetch holds)."""

    def load(self) -> State:
        return self._state

    def create(self, state: State) -> State:
        return self._state

    def update(self, change: Callable[[State], State]) -> State:
        raise ValueError(
            f"a signer does not change the CA state; the root holder does ({self.location})"
        )

    def version(self) -> str:
        return str(self._version)

    def age(self) -> float:
        """Seconds since the material held was fetched."""
        return self._clock() - self.fetched_at

    def set(self, state: State) -> bool:
        """Hold ``state``, fetched just now; returns whether it differs from what was held."""
        with self._lock:
            self.fetched_at = self._clock()
            if state.to_json() == self._state.to_json():
                return False
            self._state = state
            self._version += 1
            return True


class Refresher:
    """Fetches the material into a `MemoryStore` every ``interval`` seconds; `age` says how
    long ago the last fetch succeeded."""

    def __init__(self, holder: RootHolder, store: MemoryStore) -> None:
        self.holder = holder
        self.store = store
        self._failing = False

    def run(self) -> None:
        """One fetch; a failure is logged once per streak and leaves the material as it is."""
        try:
            state = self.holder.fetch()
        except OSError as e:
            if not self._failing:
                _log.warning("keeping the signing material held (%s); retrying", e)
            self._failing = True
            return
        if self._failing:
            _log.info("root holder %s reachable again", self.holder.url)
        self._failing = False
        if self.store.set(state):
            _log.info(
                "signing material changed: phase %s, material %s",
                state.phase,
                state.material_sha256[:12],
            )

    def age(self) -> float:
        """Seconds since the last successful fetch."""
        return self.store.age()

    def start(self, interval: float) -> threading.Event:
        """Run now and then every ``interval`` seconds in a daemon thread (a worker that
        gunicorn starts later must not serve its master's old copy for long); set the returned
        event to stop."""
        stop = threading.Event()

        def loop() -> None:
            while True:
                try:
                    self.run()
                except Exception:  # keep signing with what is held; the next round tries again
                    _log.exception("fetching the signing material failed")
                if stop.wait(interval):
                    return

        threading.Thread(target=loop, name="hello-mtls-ca-material", daemon=True).start()
        return stop


def _error(response: requests.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
