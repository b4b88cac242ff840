"""A signer pod's side: the signing material fetched from the root holder, kept in memory.

A signer holds no state directory. It asks the root holder's ``POST /signing-material``
(`RootHolder.fetch`), over TLS that trusts only the roots it was given (the ``ca.crt`` of the
operator's credential Secret, the one key of it the signer mounts) and with its projected
ServiceAccount token as the bearer token, read afresh on every call because the kubelet
rotates it. The answer (certificates, settings and the signing intermediate's key; never a
root key) is the pod's one copy of the material, a state directory in the pod's scratch space,
which in a cluster is a memory-backed ``emptyDir`` (tmpfs: the key never reaches a disk and
goes with the pod). gunicorn's master fetches once before the workers start (no material, no
start, waiting, not ready, as long as the root holder has none to give: `Refresher.first`);
every worker then fetches again every ``interval`` seconds (`Refresher`), to follow an
intermediate renewal or a root rotation, and all of them read the one copy, so a pod never
serves two materials at once. When the root holder cannot be reached the pod keeps what it
holds and signs on. The same endpoint and token carry the signer's reports of what it signed
(`RootHolder.report`, ``POST /issued``; `mtls_ca.signer_reports` queues and batches them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .revocation import IssuedRecord
from .state import DirectoryStore, State, StateNotFound

__all__ = [
    "ISSUED_PATH",
    "MATERIAL_PATH",
    "WAITING_LOG_EVERY",
    "Refresher",
    "ReportRefused",
    "RootHolder",
]

MATERIAL_PATH = "/signing-material"
ISSUED_PATH = "/issued"
WAITING_LOG_EVERY = 300.0
"""Seconds between the log lines of a signer that waits for its first material."""
_log = logging.getLogger("mtls_ca")


@dataclass(frozen=True)
class RootHolder:
    """Where the signing material comes from and how the signer proves itself."""

    url: str
    """The root holder's material port, ``https://HOST:PORT`` (``POST /signing-material`` and
    ``POST /issued``)."""
    roots: Path
    """The PEM roots the root holder's serving certificate must chain to."""
    token: Path
    """The projected ServiceAccount token (audience: the root holder's)."""
    timeout: float = 10.0
    _kept: threading.local = field(default_factory=threading.local, compare=False, repr=False)

    def fetch(self) -> State:
        """The signing material now.

        Raises:
            OSError: if the root holder cannot be reached, refuses, or answers no usable state.
        """
        if not self.roots.is_file():
            raise OSError(
                f"no roots to trust the root holder by in {self.roots} yet (the root holder "
                "puts them in the operator's credential Secret once it has a CA: in offline "
                "mode after hello-mtls-ca import)"
            )
        response = self._post(MATERIAL_PATH)
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

    def report(self, records: Sequence[IssuedRecord]) -> None:
        """Hand ``records`` of certificates this signer signed to the root holder's index
        (``POST /issued``, `mtls_ca.signer_reports`).

        Raises:
            ReportRefused: if the root holder refused them as malformed (sending them again
                would not help).
            OSError: if the root holder cannot be reached or refuses the signer (try again).
        """
        # The records' lines joined as they are: the JSON of {"issued": [record, ...]}.
        body = b'{"issued":[' + b",".join(r.line.rstrip(b"\n") for r in records) + b"]}"
        response = self._post(ISSUED_PATH, body, keep=True)
        if response.status_code == 400:
            raise ReportRefused(f"root holder {self.url}: {_error(response)}")
        if response.status_code != 200:
            raise OSError(
                f"root holder {self.url}: HTTP {response.status_code}: {_error(response)}"
            )

    def _post(self, path: str, body: bytes = b"", *, keep: bool = False) -> requests.Response:
        """POST with the token read afresh; ``keep``: on this thread's kept connection (the
        reports go every second), else on one of its own."""
        try:
            token = self.token.read_text().strip()
        except OSError as e:
            raise OSError(f"cannot read the signer's token {self.token}: {e}") from None
        session = getattr(self._kept, "session", None) if keep else None
        if session is None:
            session = requests.Session()
            session.trust_env = False  # only our roots count, and no proxy sees the answer
        try:
            return session.post(
                self.url.rstrip("/") + path,
                data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                verify=str(self.roots),
                timeout=self.timeout,
            )
        except requests.RequestException as e:
            self._kept.session, keep = None, False
            raise OSError(f"root holder {self.url}: {e}") from None
        finally:
            if keep:
                self._kept.session = session
            else:
                session.close()


class ReportRefused(Exception):
    """The root holder refused a report of issued certificates as malformed."""


class Refresher:
    """Fetches the material into the signer pod's one copy (a `mtls_ca.state.DirectoryStore`
    that every worker reads, so all of them serve the same material) every ``interval``
    seconds; `age` says how long ago a fetch last succeeded."""

    def __init__(self, holder: RootHolder, store: DirectoryStore) -> None:
        self.holder = holder
        self.store = store
        self._fetched = store.directory / ".fetched"
        self._failing = False

    def run(self, *, strict: bool = False) -> None:
        """One fetch. A failure is logged once per streak and leaves the material as it is,
        unless ``strict`` (the first fetch, before there is any): then it raises `OSError`."""
        try:
            state = self.holder.fetch()
        except OSError as e:
            if strict:
                raise
            if not self._failing:
                _log.warning("keeping the signing material held (%s); retrying", e)
            self._failing = True
            return
        if self._failing:
            _log.info("root holder %s reachable again", self.holder.url)
        self._failing = False
        try:
            held = self.store.load().to_json()
        except (StateNotFound, ValueError):
            held = b""
        if held != state.to_json():
            self.store.put(state)
            _log.info(
                "signing material now: phase %s, material %s",
                state.phase,
                state.material_sha256[:12],
            )
        self._fetched.touch()

    def first(self, interval: float) -> None:
        """Fetch until there is material: the signer serves nothing before, so it waits, not
        ready, while the root holder cannot be reached or has no CA yet (offline mode until
        ``hello-mtls-ca import``), trying every ``interval`` seconds and saying why at once and
        then every `WAITING_LOG_EVERY` seconds."""
        said = 0.0
        while True:
            try:
                self.run(strict=True)
            except OSError as e:
                if not said or time.monotonic() - said >= WAITING_LOG_EVERY:
                    _log.warning(
                        "waiting for the signing material, not serving yet: %s; "
                        "trying every %.0f s",
                        e,
                        interval,
                    )
                    said = time.monotonic()
                time.sleep(interval)
                continue
            if said:
                _log.info("got the signing material from %s: serving", self.holder.url)
            return

    def age(self) -> float:
        """Seconds since a worker of this pod last fetched the material."""
        return time.time() - self._fetched.stat().st_mtime

    def start(self, interval: float) -> threading.Event:
        """Run now and then every ``interval`` seconds in a daemon thread (a worker that
        gunicorn starts later must not serve an old copy for long); set the returned event to
        stop."""
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
