"""``hello-mtls-ca serve``: the CA service under gunicorn (``gthread`` workers).

Before the workers start, the master makes sure the state exists (created on a first start in
a cluster: ``--create-if-missing``) and runs one `Upkeep` round, so the serving certificate
exists when gunicorn checks for it. Each worker then builds its own `StateCache`, Flask app and
upkeep timer after the fork. With ``--sign-bind`` gunicorn listens on a second port, the only
one that serves ``POST /sign`` and ``POST /rotate-root``, with worker processes of its own.
The workers are gthread's whose threads never wait for a client: they take the TLS handshake and
each request as far as the client has sent them, give the connection back to the worker's loop
until there is more, and answer only a whole request, all under deadlines
(`mtls_ca.gunicorn_worker`).

The same command runs the two kinds of CA pod. The **root holder** (``--state``) holds the
state directory with the root keys; with ``--material-bind`` it also hands the signing material
to signer pods on that port (`mtls_ca.signer_auth`). A **signer** (``--root-holder``) holds no
directory of its own: the master fetches the material before the workers start into the scratch
directory (in a cluster on a memory-backed volume), every worker then follows the root holder
into that one copy (`mtls_ca.signer_material`), and it signs with the intermediate's key that
never touches a disk; each worker reports what it signed to the root holder's index
(`mtls_ca.signer_reports`).
TLS comes from the library's gunicorn settings (`mtls_context.gunicorn_hooks`) in the
``optional`` client-certificate mode: each connection is served whole by the current generation
of the serving directory, which picks up a renewed certificate or trust bundle within a second.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from mtls_context.gunicorn_hooks import tls_settings
from mtls_contract import durations, name_rules

from . import audit, upstream
from .authority import CA, KeyType
from .gunicorn_worker import BufferingThreadWorker, ConnectionLimits, serve_apart
from .revocation import IssuedIndex
from .signer_auth import KubernetesReviewer, SignerPolicy
from .signer_material import Refresher, RootHolder
from .state import DirectoryStore, State, StateNotFound, Store
from .state_cache import StateCache
from .upkeep import CredentialSink, Serving, Upkeep

__all__ = ["ServeOptions", "serve"]

_log = logging.getLogger("mtls_ca")
_IMPORT_POLL = 2.0
_FIRST_FETCH_POLL = 2.0
"""Signer: seconds at most between tries of its first fetch of the material."""


@dataclass(frozen=True)
class ServeOptions:
    """What ``hello-mtls-ca serve`` was asked for (see its ``--help``)."""

    state: Path | None
    """The root holder's state directory; None on a signer (``root_holder``)."""
    bind: str
    workers: int
    threads: int
    serving_names: tuple[str, ...]
    serving_duration: datetime.timedelta
    tls_dir: Path | None
    provisioner_secret: str | None
    provisioner_duration: datetime.timedelta
    upkeep_interval: float
    refresh_interval: float
    trust_domain: str
    profile: str | None = None
    """TLS profile; None keeps the state's (``intermediate`` for a new state)."""
    key_type: str = "ecdsa-p256"
    cluster_domain: str = name_rules.CLUSTER_DOMAIN
    extra_allowed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    allowed_ips: Mapping[str, tuple[name_rules.IPNetwork, ...]] = field(default_factory=dict)
    minimum: datetime.timedelta | None = None
    """Shortest leaf lifetime; None keeps the state's (5m for a new state)."""
    maximum: datetime.timedelta | None = None
    """Longest leaf lifetime; None keeps the state's (30d for a new state)."""
    create_if_missing: bool = False
    sign_bind: str | None = None
    """Where POST /sign and POST /rotate-root are served; None: on ``bind``."""
    namespace: str | None = None
    """The CA's namespace in a cluster (where the provisioner Secret goes); None: not in one."""
    sign_workers: int = 2
    """With ``sign_bind``: the worker processes that serve it alone (``workers`` serve ``bind``)."""
    limits: ConnectionLimits = ConnectionLimits()
    max_connections: int = 256
    """Open connections per worker (gunicorn's ``worker_connections``)."""
    material_bind: str | None = None
    """Root holder: where POST /signing-material is served to signers; None: not served."""
    signers: tuple[str, str, str] | None = None
    """With ``material_bind``: the signers' (namespace, ServiceAccount, token audience)."""
    root_holder: RootHolder | None = None
    """Signer: where the signing material comes from (then ``state`` is None)."""
    fetch_interval: float = 30.0
    """Signer: seconds between fetches of the material."""
    audit_head_interval: float = audit.HEAD_SECONDS
    """Seconds within which an audit record gets its signed head."""
    upstream_dir: Path | None = None
    """Root holder, volume mode: the organisation's certificate (``tls.crt``, with ``ca.crt``
    when the root is not in it) and key (``tls.key``), read at every start."""
    upstream_offline: bool = False
    """Root holder, offline mode: with no state, write a CSR and wait for its import."""


def serve(options: ServeOptions) -> int:
    """Run the service until SIGTERM/SIGINT; returns the exit status."""
    if options.sign_bind and _port(options.sign_bind) == _port(options.bind):
        raise ValueError(f"--sign-bind {options.sign_bind} needs another port than {options.bind}")
    binds = [options.bind, *(b for b in (options.sign_bind, options.material_bind) if b)]
    if len({_port(b) for b in binds}) != len(binds):
        raise ValueError(f"--material-bind {options.material_bind} needs a port of its own")
    scratch = Path(tempfile.mkdtemp(prefix="hello-mtls-ca-"))
    master = os.getpid()
    material_dir = scratch / "material" if options.root_holder is not None else None
    # A signer keeps its own chain for its life, on its memory-backed scratch volume; its
    # stdout is the copy that outlives it (docs/ca.md, "Audit trail").
    audit_dir = options.state / "audit" if options.state is not None else scratch / "audit"
    try:
        store = _store(options, material_dir)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    tls_dir = options.tls_dir or scratch / "serving"
    metrics_dir = scratch / "metrics"
    metrics_dir.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        _upkeep(store, options, tls_dir, audit_dir).run()
        name_rules.preload()
        settings = {
            "bind": binds,
            "worker_class": BufferingThreadWorker.with_limits(options.limits),
            "workers": options.workers,
            "threads": options.threads,
            "worker_connections": options.max_connections,
            "keepalive": 30,
            # Read-only endpoints serve callers without a certificate; the views that need
            # one check it.
            **tls_settings(tls_dir, verify="optional"),
            "control_socket_disable": True,
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "hello-mtls-ca",
        }
        if options.sign_bind:
            workers = options.workers + options.sign_workers
            sign_port = _port(options.sign_bind)
            settings["workers"] = workers
            # A signer's signatures wait on no disk: its signing workers answer on their event
            # loop (`mtls_ca.event_worker`); the root holder's share flushes on threads.
            settings["pre_fork"] = serve_apart(
                sign_port, options.sign_workers, workers, event_loop=options.root_holder is not None
            )
        _Application(settings, lambda: _worker_app(options, tls_dir, material_dir, audit_dir)).run()
    finally:
        # A worker leaves through here too (gunicorn ends a forked worker with SystemExit): the
        # scratch space (serving certificate, metrics, a signer's material and audit chain) is
        # the pod's, and goes only with the master.
        if os.getpid() == master:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _store(options: ServeOptions, material_dir: Path | None) -> Store:
    """The root holder's directory (made ready), or a signer's first fetch of the material
    into ``material_dir``."""
    if options.root_holder is not None:
        assert material_dir is not None
        if options.material_bind:
            raise ValueError("a signer (--root-holder) hands out no material (--material-bind)")
        _log.info("fetching the signing material from %s", options.root_holder.url)
        store = DirectoryStore(material_dir)
        Refresher(options.root_holder, store).first(min(options.fetch_interval, _FIRST_FETCH_POLL))
        return store
    if options.state is None:
        raise ValueError("serve needs --state (the root holder) or --root-holder (a signer)")
    store = DirectoryStore(options.state)
    _ensure_state(store, options)
    return store


def _ensure_state(store: Store, options: ServeOptions) -> None:
    """Create a missing state if asked to; bring an existing one to the settings given.

    The leaf lifetime bounds and the TLS profile are what the Deployment says (so that
    ``helm upgrade --set certificates.minDuration=...`` takes effect). The trust domain and the
    key type are the state's for good: changing them would rename or re-key every identity.
    """
    assert options.state is not None
    given = _given_upstream(options)
    try:
        state = store.load()
    except StateNotFound:
        if options.upstream_offline:
            _await_import(store, options)
            state = store.load()
        elif not (options.create_if_missing or given is not None):
            raise
        else:
            _log.warning(
                "no CA state in %s: creating %s",
                store.location,
                "an intermediate under the organisation's certificate"
                if given is not None
                else "a new root and intermediate",
            )
            created = store.create(
                State(
                    generations=(given or CA.create(key_type=KeyType(options.key_type)),),
                    trust_domain=options.trust_domain,
                    tls_profile=options.profile or "intermediate",
                    minimum=options.minimum or durations.DEFAULT_MINIMUM,
                    maximum=options.maximum or durations.DEFAULT_MAXIMUM,
                    upstream="volume" if given is not None else "none",
                )
            )
            _audit_log(options.state / "audit", lambda: created.signer).rotation(
                "hello-mtls-ca serve", created, previous=None
            )
            return
    if given is not None and upstream.is_new(state, given):
        before = state.phase
        _log.warning(
            "the organisation's certificate on the volume changed: %s", given.issuer.subject
        )
        new = store.update(lambda current: upstream.adopt(current, given, mode="volume"))
        trail = _audit_log(options.state / "audit", lambda: new.signer)
        if new.phase != before:
            trail.rotation("hello-mtls-ca serve (upstream volume)", new, previous=before)
        state = new
    if state.trust_domain != options.trust_domain:
        _log.warning(
            "the state's trust domain %s is kept (--trust-domain %s applies to a new state only)",
            state.trust_domain,
            options.trust_domain,
        )
    if _wanted(state, options) != (state.minimum, state.maximum, state.tls_profile):
        store.update(lambda current: _apply_settings(current, options))


def _given_upstream(options: ServeOptions) -> CA | None:
    """A new intermediate under the organisation's certificate on the volume, if one is given."""
    if options.upstream_dir is None:
        return None
    directory = options.upstream_dir
    cert = (directory / "tls.crt").read_bytes()
    if (directory / "ca.crt").is_file():
        cert += b"\n" + (directory / "ca.crt").read_bytes()
    try:
        return upstream.given(
            cert,
            (directory / "tls.key").read_bytes(),
            key_type=KeyType(options.key_type),
            trust_domain=options.trust_domain,
        )
    except ValueError as e:
        raise ValueError(f"the organisation's certificate in {directory}: {e}") from None


def _await_import(store: Store, options: ServeOptions) -> None:
    """Offline mode's first start: write the signing CA's CSR and poll for its import."""
    assert options.state is not None
    csr = options.state / "upstream.csr"
    try:
        upstream.pending(options.state)
    except ValueError:
        settings = {
            "trust_domain": options.trust_domain,
            "profile": options.profile or "intermediate",
            "minimum": durations.format_duration(options.minimum or durations.DEFAULT_MINIMUM),
            "maximum": durations.format_duration(options.maximum or durations.DEFAULT_MAXIMUM),
        }
        csr.write_bytes(upstream.write_csr(options.state, KeyType(options.key_type), settings))
    _log.warning(
        "no CA state: waiting for the signing CA of the CSR in %s to be imported "
        "(hello-mtls-ca import --state %s CERT --chain CHAIN)\n%s",
        csr,
        options.state,
        csr.read_text(),
    )
    while True:
        try:
            store.load()
            return
        except StateNotFound:
            time.sleep(_IMPORT_POLL)


def _wanted(
    state: State, options: ServeOptions
) -> tuple[datetime.timedelta, datetime.timedelta, str]:
    """Lifetime bounds and TLS profile as given to serve, the state's where none was given."""
    return (
        options.minimum or state.minimum,
        options.maximum or state.maximum,
        options.profile or state.tls_profile,
    )


def _apply_settings(state: State, options: ServeOptions) -> State:
    minimum, maximum, profile = _wanted(state, options)
    changed = replace(state, minimum=minimum, maximum=maximum, tls_profile=profile)
    _log.warning(
        "CA settings changed: leaf lifetimes %s-%s -> %s-%s, TLS profile %s -> %s",
        durations.format_duration(state.minimum),
        durations.format_duration(state.maximum),
        durations.format_duration(changed.minimum),
        durations.format_duration(changed.maximum),
        state.tls_profile,
        changed.tls_profile,
    )
    return changed


def _audit_log(directory: Path, signing: Callable[[], CA]) -> audit.AuditLog:
    return audit.AuditLog(directory, signing=signing, echo=sys.stdout)


def _upkeep(store: Store, options: ServeOptions, tls_dir: Path, audit_dir: Path) -> Upkeep:
    cache = StateCache(store, refresh_interval=options.refresh_interval)
    credential: CredentialSink | None = None
    if options.provisioner_secret and options.namespace and options.root_holder is None:
        from .k8s_secrets import TLSSecret

        credential = TLSSecret(options.namespace, options.provisioner_secret)
    return Upkeep(
        cache,
        Serving(tls_dir, options.serving_names, options.serving_duration),
        credential=credential,
        credential_duration=options.provisioner_duration,
        issued=IssuedIndex(options.state) if options.state is not None else None,
        audit=_audit_log(audit_dir, lambda: cache.state().signer),
    )


def _worker_app(
    options: ServeOptions, tls_dir: Path, material_dir: Path | None, audit_dir: Path
) -> Any:
    # In the worker: prometheus-client reads its environment at import.
    from .http_api import MaterialEndpoint, create_app
    from .signer_reports import INTERVAL, IssuedReports

    material: MaterialEndpoint | None = None
    material_age: Callable[[], float] | None = None
    reports: IssuedReports | None = None
    store: Store
    if material_dir is not None:
        assert options.root_holder is not None
        # Every worker fetches into the pod's one copy, so all of them serve the same material.
        store = DirectoryStore(material_dir)
        refresher = Refresher(options.root_holder, store)
        refresher.start(options.fetch_interval)
        material_age = refresher.age
        reports = IssuedReports(options.root_holder.report)
        reports.start(INTERVAL)
        # gunicorn's worker leaves by sys.exit after a graceful stop (SIGTERM): one last try.
        atexit.register(reports.close)
    else:
        assert options.state is not None
        store = DirectoryStore(options.state)
        if options.material_bind and options.signers:
            namespace, account, audience = options.signers
            policy = SignerPolicy(namespace, account, audience, KubernetesReviewer())
            material = MaterialEndpoint(_port(options.material_bind), policy)
    upkeep = _upkeep(store, options, tls_dir, audit_dir)
    upkeep.start(options.upkeep_interval)
    assert upkeep.audit is not None
    upkeep.audit.start(options.audit_head_interval)
    return create_app(
        upkeep.cache,
        cluster_domain=options.cluster_domain,
        extra_allowed=options.extra_allowed,
        allowed_ips=options.allowed_ips,
        after_change=upkeep.run,
        sign_port=_port(options.sign_bind) if options.sign_bind else None,
        material=material,
        material_age=material_age,
        issued=upkeep.issued,
        reports=reports,
        audit=upkeep.audit,
    )


def _port(bind: str) -> int:
    """The port of a ``HOST:PORT`` (``[::]:PORT`` too)."""
    try:
        return int(bind.rpartition(":")[2])
    except ValueError:
        raise ValueError(f"'{bind}' is not HOST:PORT") from None


class _Application(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: dict[str, Any], load: Callable[[], Any]) -> None:
        self._settings = settings
        self._load = load
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        for name in ("mtls_ca", "mtls_context"):
            log = logging.getLogger(name)
            log.handlers = logging.getLogger("gunicorn.error").handlers
            log.setLevel(logging.INFO)
            log.propagate = False
        return self._load()
