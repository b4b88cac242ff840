"""The upkeep that keeps the running service's certificates current.

`Upkeep` runs on a timer in each worker (and once before the workers start): on the root
holder it renews the signing intermediate at 2/3 of its life, signs the CRLs again when due
(`mtls_ca.revocation.crl_due`: daily, and at once for a new intermediate) and then drops expired
entries from the index of issued certificates; on every CA pod it re-issues the
service's own serving certificate when it ages or the trust bundle, signer or TLS policy change;
on the root holder in a cluster it does the same for the operator's provisioner credential
Secret. Workers coordinate through the store's
lock and an ``fcntl`` lock on the serving directory, so doing the same
check in several workers is harmless.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from cryptography import x509

from mtls_context import layout
from mtls_contract import durations, identities

from . import revocation, tls_profiles
from .audit import AuditLog
from .authority import renewal_due
from .state import State
from .state_cache import StateCache

__all__ = ["CredentialSink", "Serving", "Upkeep", "is_current"]

_log = logging.getLogger("mtls_ca")
# Who asks, in the audit trail, for what the service issues itself.
_BY = "hello-mtls-ca (upkeep)"
_WARN_EVERY = datetime.timedelta(hours=1)


class CredentialSink(Protocol):
    """Where the provisioner credential goes (a ``kubernetes.io/tls`` Secret in a cluster)."""

    location: str

    def read(self) -> dict[str, bytes] | None: ...

    def write(self, files: dict[str, bytes]) -> bool: ...


@dataclass(frozen=True)
class Serving:
    """The service's own certificate: where it lives and what it says."""

    directory: Path
    names: tuple[str, ...]
    duration: datetime.timedelta = datetime.timedelta(hours=24)


@dataclass
class Upkeep:
    """Everything the service renews by itself; `run` once, or `start` a timer thread."""

    cache: StateCache
    serving: Serving
    credential: CredentialSink | None = None
    credential_name: str = "operator"
    credential_duration: datetime.timedelta = datetime.timedelta(days=7)
    issued: revocation.IssuedIndex | None = None
    audit: AuditLog | None = None
    _warned: datetime.datetime | None = field(default=None, init=False)

    def run(self, now: datetime.datetime | None = None) -> None:
        """One round of checks; renews what is due."""
        now = now or datetime.datetime.now(datetime.UTC)
        state = self.cache.state()
        if state.holds_root_keys:
            self._warn(state.warnings(now), now)
        if state.holds_root_keys and _renewal_step_due(state, now):
            # Only the root holder renews; a signer fetches the renewed one from it.
            before = state.signer.intermediate
            state = self.cache.update(lambda s: _renew_intermediate(s, now))
            if self.audit is not None and state.signer.intermediate != before:
                self.audit.renewal(_BY, state)
        if state.holds_root_keys and revocation.crl_due(state, now):
            state = self.cache.update(lambda s: _sign_crls(s, now))
            if self.issued is not None:
                self.issued.prune(now)
        with _locked(self.serving.directory):
            if not is_current(_read(self.serving.directory), state, now):
                issued = state.signer.issue(
                    *self.serving.names, valid_for=self.serving.duration, now=now
                )
                assert issued.key_pem is not None
                if self.audit is not None:
                    self.audit.issuance(_BY, issued)
                layout.write_version(
                    self.serving.directory, _files(state, issued.chain_pem, issued.key_pem)
                )
                _log.info("serving certificate renewed: serial %x", issued.serial)
        if self.credential is not None and not is_current(self.credential.read(), state, now):
            uri = identities.provisioner_id(state.trust_domain, self.credential_name)
            issued = state.signer.issue(
                uris=[uri],
                common_name=self.credential_name,
                valid_for=self.credential_duration,
                client_only=True,
                now=now,
            )
            assert issued.key_pem is not None
            if self.audit is not None:
                self.audit.issuance(_BY, issued)
            if self.credential.write(_files(state, issued.chain_pem, issued.key_pem)):
                _log.info(
                    "provisioner credential %s renewed: serial %x",
                    self.credential.location,
                    issued.serial,
                )

    def _warn(self, warnings: list[str], now: datetime.datetime) -> None:
        # Once an hour per worker: loud enough to be seen, not a line every round.
        if warnings and (self._warned is None or now - self._warned >= _WARN_EVERY):
            self._warned = now
            for warning in warnings:
                _log.warning("upstream: %s", warning)

    def start(self, interval: float) -> threading.Event:
        """Run every ``interval`` seconds in a daemon thread; set the returned event to stop."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.run()
                except Exception:  # keep serving; the next round tries again
                    _log.exception("upkeep failed")

        threading.Thread(target=loop, name="hello-mtls-ca-upkeep", daemon=True).start()
        return stop


def is_current(files: dict[str, bytes] | None, state: State, now: datetime.datetime) -> bool:
    """Whether a certificate directory's files need no re-issue under ``state`` at ``now``.

    They must exist, carry the current bundle and TLS policy, chain to the signing intermediate
    and be short of 2/3 of their lifetime.
    """
    if not files or not files.get(layout.KEY) or files.get(layout.CA) != state.bundle_pem:
        return False
    if files.get(layout.POLICY) != tls_profiles.render(state.tls_profile):
        return False
    try:
        chain = x509.load_pem_x509_certificates(files.get(layout.CERT, b""))
    except ValueError:
        return False
    return (
        len(chain) == 2 + len(state.signer.chain)
        and chain[1] == state.signer.intermediate
        and not renewal_due(chain[0], now=now)
    )


def _renewal_step_due(state: State, now: datetime.datetime) -> bool:
    """At 2/3 of the signing intermediate's life a successor is made (``upcoming``: its CRL is
    published at once); `revocation.CRL_LEAD` later it takes over and the old one retires.
    Under an offline root the successor is imported (`mtls_ca.upstream`): without one there is
    nothing to make, and one takes over at once when the old one has expired."""
    signer = state.signer.intermediate
    if not renewal_due(signer, now=now):
        return False
    if state.upcoming is None:
        return state.signer.root_key is not None
    if signer.not_valid_after_utc <= now:
        return True
    born = state.upcoming_since or (
        state.upcoming.intermediate.not_valid_before_utc + durations.BACKDATE
    )
    return now >= born + revocation.CRL_LEAD


def _renew_intermediate(state: State, now: datetime.datetime) -> State:
    if not _renewal_step_due(state, now):
        return state  # another worker or replica took this step meanwhile
    signer = state.signer
    if state.upcoming is None:
        upcoming = signer.renew_intermediate(now=now)
        _log.info(
            "next intermediate made; its CRL is published now and it signs from %s",
            now + revocation.CRL_LEAD,
        )
        return revocation.with_crl(replace(state, upcoming=upcoming), now=now)
    renewed = state.upcoming
    _log.info(
        "signing intermediate renewed, now valid until %s", renewed.intermediate.not_valid_after_utc
    )
    return revocation.with_crl(
        replace(
            state,
            generations=tuple(renewed if g is signer else g for g in state.generations),
            upcoming=None,
            upcoming_since=None,
            handed_over=now,
            retired=(*state.retired, signer),
        ),
        now=now,
    )


def _sign_crls(state: State, now: datetime.datetime) -> State:
    if not revocation.crl_due(state, now):
        return state  # another worker signed them meanwhile
    signed = revocation.with_crl(state, now=now)
    _log.info("CRLs signed: number %d, %d revoked", signed.crl_number, len(signed.revoked))
    return signed


def _files(state: State, chain: bytes, key: bytes) -> dict[str, bytes]:
    return layout.version_files(
        chain, key, state.bundle_pem, tls_profiles.render(state.tls_profile)
    )


def _read(directory: Path) -> dict[str, bytes] | None:
    try:
        return layout.read_version(directory)
    except OSError:
        return None


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
