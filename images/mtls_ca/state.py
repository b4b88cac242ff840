"""The CA's persisted state and the directory it lives in locally.

One JSON document holds everything: the CA generations (root + intermediate with their keys),
the rotation phase, the TLS profile, the trust domain and the duration bounds. Locally it is
``DIR/state.json`` (mode 0600 in a 0700 directory), replaced atomically under an ``fcntl`` lock so
several CLI runs and service workers never lose each other's writes. In a cluster the directory
is on a PersistentVolumeClaim that only the CA's pod mounts: the keys never go through the
Kubernetes API, so no role that may read Secrets can read them.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from mtls_contract import durations, name_rules
from mtls_contract.phases import Phase

from . import revocation, rotation, tls_profiles
from .authority import CA, fingerprint, renewal_due
from .revocation import Revocation

__all__ = ["UPSTREAM_MODES", "DirectoryStore", "State", "StateNotFound", "Store"]

UPSTREAM_MODES = ("none", "offline", "volume")
"""How the roots came: made here, an organisation's with an imported signing CA
(`mtls_ca.upstream`), or an organisation's whose key the root holder was given."""

_FORMAT = 1


class StateNotFound(LookupError):
    """No CA state exists at the location yet (run ``hello-mtls-ca init``)."""


@dataclass(frozen=True)
class State:
    """Everything the CA persists. Change it with `dataclasses.replace`.

    Attributes:
        generations: CAs whose roots are trusted, oldest first (two during a root rotation).
        phase: the root rotation phase (`mtls_ca.rotation`).
        trust_domain: of the SPIFFE IDs in leaves.
        tls_profile: ``intermediate`` or ``modern``.
        minimum: shortest leaf lifetime the CA signs.
        maximum: longest leaf lifetime the CA signs.
        revoked: the revocation list (`mtls_ca.revocation`), entries of unexpired certificates.
        crl_number: the CRL number of ``crl_pem``.
        crl_pem: the signed CRLs, one per valid intermediate (``GET /crl``).
        upcoming: the signing intermediate's successor, made at 2/3 of its life: its CRL is
            published `mtls_ca.revocation.CRL_LEAD` before it signs, so that no server meets a
            leaf of it before it holds its CRL (OpenSSL refuses a leaf of an issuer without one).
        retired: intermediates that signed before, kept (with keys, on the root holder only) for
            their CRLs while their leaves may still be valid.
        bundle_sequence: how many times the set of trusted roots changed since ``init``, the
            SPIFFE bundle's ``spiffe_sequence`` (`mtls_ca.spiffe_bundle`); persisted, so it only
            grows, also across restarts.
        upcoming_since: when ``upcoming`` was imported (`mtls_ca.upstream`), its CRL published:
            the hand-over waits `mtls_ca.revocation.CRL_LEAD` from then, not from its notBefore
            that the organisation chose. None for one the CA made itself.
        handed_over: when the last successor took over from a renewed signing intermediate,
            for how long the retired one's CRL is still needed (None: before any).
        upstream: one of `UPSTREAM_MODES`.
        material_only: a signer's copy (`State.signing_material`), never the root holder's.
    """

    generations: tuple[CA, ...]
    phase: str = Phase.IDLE
    trust_domain: str = name_rules.CLUSTER_DOMAIN
    tls_profile: str = "intermediate"
    minimum: datetime.timedelta = durations.DEFAULT_MINIMUM
    maximum: datetime.timedelta = durations.DEFAULT_MAXIMUM
    revoked: tuple[Revocation, ...] = ()
    crl_number: int = 0
    crl_pem: bytes = b""
    upcoming: CA | None = None
    retired: tuple[CA, ...] = ()
    bundle_sequence: int = 0
    upcoming_since: datetime.datetime | None = None
    handed_over: datetime.datetime | None = None
    upstream: str = "none"
    material_only: bool = False

    def __post_init__(self) -> None:
        rotation.signing_index(self.phase, len(self.generations))
        if self.upstream not in UPSTREAM_MODES:
            raise ValueError(
                f"upstream mode '{self.upstream}' is unknown (one of {', '.join(UPSTREAM_MODES)})"
            )
        tls_profiles.tls_policy(self.tls_profile)
        if self.minimum > self.maximum:
            raise ValueError(
                f"minimum duration {durations.format_duration(self.minimum)} is above the maximum "
                f"{durations.format_duration(self.maximum)}"
            )

    @property
    def signer(self) -> CA:
        """The generation whose intermediate signs leaves now."""
        return self.generations[rotation.signing_index(self.phase, len(self.generations))]

    # A State never changes (a change is a new State): what every answer derives from it is
    # computed once per state, not per request.
    @cached_property
    def bundle_pem(self) -> bytes:
        """``ca.crt``: every trusted root, oldest first."""
        return b"".join(ca.root_pem for ca in self.generations)

    @cached_property
    def bundle_sha256(self) -> str:
        return hashlib.sha256(self.bundle_pem).hexdigest()

    @property
    def tls_policy(self) -> dict[str, str]:
        return tls_profiles.tls_policy(self.tls_profile)

    def status(self, now: datetime.datetime | None = None) -> dict[str, Any]:
        """What ``hello-mtls-ca status`` prints and ``GET /status`` answers; no key material."""
        signer = self.signer
        constraints = signer.name_constraints
        return {
            "phase": self.phase,
            "upstream": self.upstream,
            "chain": [
                {"role": role, **_cert_json(cert)}
                for role, cert in (
                    ("signing", signer.intermediate),
                    *(("organisation", c) for c in signer.chain),
                    ("root", signer.root),
                )
            ],
            "upcoming": _cert_json(self.upcoming.intermediate) if self.upcoming else None,
            "name_constraints": constraints.describe() if constraints is not None else [],
            "warnings": self.warnings(now),
            "trust_domain": self.trust_domain,
            "roots": [
                {
                    "fingerprint_sha256": fingerprint(ca.root),
                    "not_after": _rfc3339(ca.root.not_valid_after_utc),
                    "subject": ca.root.subject.rfc4514_string(),
                }
                for ca in self.generations
            ],
            "signing": {
                "intermediate_fingerprint_sha256": signer.intermediate_sha256,
                "intermediate_not_after": _rfc3339(signer.intermediate.not_valid_after_utc),
                "root_fingerprint_sha256": fingerprint(signer.root),
            },
            "tls_policy": self.tls_policy,
            "bundle_sha256": self.bundle_sha256,
            "material_sha256": self.material_sha256,
            "durations": {
                "minimum": durations.format_duration(self.minimum),
                "maximum": durations.format_duration(self.maximum),
            },
            "revoked": len(self.revoked),
            "crl_number": self.crl_number,
        }

    def warnings(self, now: datetime.datetime | None = None) -> list[str]:
        """What the CA's operator must do about the organisation's certificates, in words (also
        logged by the upkeep and counted by ``hello_mtls_ca_upstream_renewal_due``)."""
        if self.material_only:
            return []  # a signer's copy lacks the successor: the root holder's word counts
        now = now or datetime.datetime.now(datetime.UTC)
        signer = self.signer
        found = []
        if self.upstream == "offline" and self.upcoming is None:
            if renewal_due(signer.intermediate, now=now):
                found.append(
                    "the signing CA the organisation signed is past 2/3 of its life and expires "
                    f"at {_rfc3339(signer.intermediate.not_valid_after_utc)}: renew it "
                    "(hello-mtls-ca init --upstream-csr, then hello-mtls-ca import)"
                )
        if self.upstream == "volume" and renewal_due(signer.issuer, now=now):
            found.append(
                "the organisation's certificate on the volume is past 2/3 of its life and "
                f"expires at {_rfc3339(signer.issuer.not_valid_after_utc)}: give the root holder "
                "a renewed one"
            )
        return found

    @property
    def material_sha256(self) -> str:
        """Names what a signer must serve to be current: the phase, the bundle, the TLS policy,
        the lifetime bounds and the signing intermediate. The root holder, and each signer for
        the copy it holds, report it in ``GET /status``."""
        signer = self.signer
        document = [
            self.phase,
            self.bundle_sha256,
            signer.intermediate_sha256,
            self.trust_domain,
            self.tls_profile,
            durations.format_duration(self.minimum),
            durations.format_duration(self.maximum),
            hashlib.sha256(self.crl_pem).hexdigest(),
        ]
        return hashlib.sha256(json.dumps(document).encode()).hexdigest()

    def signing_material(self) -> State:
        """What a signer pod receives: every certificate, and of the keys only the signing
        intermediate's (no root key, no other generation's intermediate key)."""
        signer = self.signer
        return replace(
            self,
            generations=tuple(
                ca.without_keys(keep_intermediate=ca is signer) for ca in self.generations
            ),
            upcoming=None,  # the root holder alone signs CRLs, so their keys stay with it
            upcoming_since=None,
            retired=(),
            material_only=True,
        )

    @property
    def holds_root_keys(self) -> bool:
        """Whether this is the root holder's state (it may renew intermediates and rotate). Under
        an offline root it holds no root key at all, only the signing CAs' keys."""
        if self.material_only:
            return False
        return self.upstream == "offline" or all(ca.root_key is not None for ca in self.generations)

    def to_json(self) -> bytes:
        """The persisted form, including the CA keys: store it only where keys may live."""
        document = {
            "format": _FORMAT,
            "phase": self.phase,
            "trust_domain": self.trust_domain,
            "tls_profile": self.tls_profile,
            "minimum": durations.format_duration(self.minimum),
            "maximum": durations.format_duration(self.maximum),
            "generations": [_ca_json(ca) for ca in self.generations],
            "upcoming": _ca_json(self.upcoming) if self.upcoming is not None else None,
            "retired": [_ca_json(ca) for ca in self.retired],
            "revoked": [r.to_json() for r in self.revoked],
            "crl_number": self.crl_number,
            "crl": self.crl_pem.decode(),
            "bundle_sequence": self.bundle_sequence,
            "upstream": self.upstream,
            "material_only": self.material_only,
            "upcoming_since": _rfc3339(self.upcoming_since) if self.upcoming_since else None,
            "handed_over": _rfc3339(self.handed_over) if self.handed_over else None,
        }
        return json.dumps(document, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> State:
        """Load what `State.to_json` wrote.

        Raises:
            ValueError: if the document is not a CA state of a known format.
        """
        try:
            document = json.loads(data)
            if document.get("format") != _FORMAT:
                raise ValueError(f"CA state format {document.get('format')!r} is not {_FORMAT}")
            generations = tuple(_ca_from_json(g) for g in document["generations"])
            upcoming = document.get("upcoming")
            return cls(
                generations=generations,
                phase=document["phase"],
                trust_domain=document["trust_domain"],
                tls_profile=document["tls_profile"],
                minimum=durations.parse_duration(document["minimum"]),
                maximum=durations.parse_duration(document["maximum"]),
                # A state written before revocation existed has none of these three.
                revoked=tuple(Revocation.from_json(r) for r in document.get("revoked", [])),
                crl_number=int(document.get("crl_number", 0)),
                crl_pem=document.get("crl", "").encode(),
                upcoming=_ca_from_json(upcoming) if upcoming is not None else None,
                retired=tuple(_ca_from_json(g) for g in document.get("retired", [])),
                # A state written before the SPIFFE bundle existed starts counting here.
                bundle_sequence=int(document.get("bundle_sequence", 0)),
                # A state written before upstream roots existed made its own.
                upstream=document.get("upstream", "none"),
                material_only=bool(document.get("material_only", False)),
                upcoming_since=_moment(document.get("upcoming_since")),
                handed_over=_moment(document.get("handed_over")),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise ValueError(f"CA state is damaged: {type(e).__name__}: {e}") from None

    def rotated(self, *, expected: str, new_ca: Callable[[], CA] | None = None) -> State:
        """This state one root rotation step further (`mtls_ca.rotation.advance`).

        Args:
            expected: the phase the caller believes is current.
            new_ca: the new generation when leaving ``idle``; by default a new root made here,
                which only a CA with its own root may make.

        Raises:
            mtls_ca.rotation.PhaseMismatch: if the phase is not ``expected``.
            ValueError: if a new root is due and the roots are an organisation's.
        """
        key_type = self.signer.key_type
        if new_ca is None and self.phase == Phase.IDLE and self.upstream != "none":
            raise ValueError(
                "the root is the organisation's: a new one comes from it (hello-mtls-ca import "
                "of a signing CA under it, or its certificate on the volume), not from rotate-root"
            )
        phase, generations = rotation.advance(
            self.phase,
            self.generations,
            expected=expected,
            new_ca=new_ca or (lambda: CA.create(key_type=key_type)),
        )
        rotated = replace(self, phase=phase, generations=generations)
        if rotated.bundle_pem != self.bundle_pem:
            rotated = replace(rotated, bundle_sequence=self.bundle_sequence + 1)
        # A new generation's intermediate gets its CRL at once, in the same step (and material).
        return revocation.with_crl(rotated) if revocation.crl_due(rotated) else rotated


class Store(Protocol):
    """Where a `State` lives. Every change goes through `update`, atomically."""

    location: str

    def load(self) -> State:
        """The current state. Raises `StateNotFound` if there is none."""
        ...

    def create(self, state: State) -> State:
        """Store ``state`` unless a state exists already; return the one that is stored."""
        ...

    def update(self, change: Callable[[State], State]) -> State:
        """Apply ``change`` to the current state atomically; return the new state."""
        ...

    def version(self) -> str:
        """A token that changes whenever the stored state changes."""
        ...


class DirectoryStore:
    """The state in ``DIR/state.json``; writers serialise on ``DIR/.lock`` with ``fcntl``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.location = str(directory)
        self._path = directory / "state.json"

    def load(self) -> State:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            hint = f"run: hello-mtls-ca init --state {self.directory}"
            raise StateNotFound(f"no CA state in {self.directory} ({hint})") from None
        return State.from_json(data)

    def create(self, state: State) -> State:
        with self._locked():
            if self._path.exists():
                return self.load()
            self._write(state)
            return state

    def update(self, change: Callable[[State], State]) -> State:
        with self._locked():
            new = change(self.load())
            self._write(new)
            return new

    def put(self, state: State) -> State:
        """Store ``state`` whatever is stored (a signer's copy of the root holder's)."""
        with self._locked():
            self._write(state)
            return state

    def version(self) -> str:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return ""
        return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, state: State) -> None:
        tmp = self._path.with_name(f".state.json.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(state.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self._path)
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _ca_json(ca: CA) -> dict[str, str | None]:
    root, root_key, intermediate, intermediate_key = ca.to_pem()
    return {
        "root": root.decode(),
        "root_key": root_key.decode() if root_key is not None else None,
        "intermediate": intermediate.decode(),
        "intermediate_key": intermediate_key.decode() if intermediate_key is not None else None,
        "chain": ca.chain_pem[len(ca.intermediate_pem) :].decode(),
    }


def _ca_from_json(document: dict[str, Any]) -> CA:
    return CA.from_pem(
        document["root"].encode(),
        _optional_pem(document["root_key"]),
        document["intermediate"].encode(),
        _optional_pem(document["intermediate_key"]),
        document.get("chain", "").encode(),
    )


def _cert_json(cert: x509.Certificate) -> dict[str, str]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "fingerprint_sha256": fingerprint(cert),
        "not_after": _rfc3339(cert.not_valid_after_utc),
    }


def _optional_pem(text: str | None) -> bytes | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"a key must be a PEM string or null, not {type(text).__name__}")
    return text.encode()


def _moment(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text) if text else None


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
