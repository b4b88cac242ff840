"""``hello-mtls-ca``: create the CA, issue certificates, run the service, rotate the root,
revoke certificates, inspect what a file, a directory or a server presents.

Results go to stdout (JSON for ``status`` and ``rotate-root``), progress and errors to stderr;
every failure is one line and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import ipaddress
import json
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from mtls_context import layout
from mtls_contract import durations, identities, name_rules
from mtls_contract.phases import Phase

from . import audit, inspector, revocation, tls_profiles, upstream
from .authority import CA, KeyType
from .signer_material import RootHolder
from .state import DirectoryStore, State, StateNotFound

__all__ = ["main"]

_KEY_TYPES = [k.value for k in KeyType]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        result: int = args.run(args)
        return result
    except (ValueError, StateNotFound, OSError) as e:
        print(f"hello-mtls-ca: error: {e}", file=sys.stderr)
        return 1


def _init(args: argparse.Namespace) -> int:
    store = DirectoryStore(args.state)
    try:
        existing: State | None = store.load()
    except StateNotFound:
        existing = None
    if (args.upstream_key is None) != (args.upstream_cert is None):
        raise ValueError("--upstream-key and --upstream-cert go together")
    if args.upstream_csr is not None and args.upstream_key is not None:
        raise ValueError("--upstream-csr (offline root) or --upstream-key (root on a volume)")
    if existing is not None and args.upstream_csr is None and args.upstream_key is None:
        raise ValueError(f"a CA already exists in {store.location}; refusing to replace it")
    minimum, maximum = (
        durations.parse_duration(args.min_duration),
        durations.parse_duration(args.max_duration),
    )
    tls_profiles.tls_policy(args.profile)
    identities.spiffe_id(args.trust_domain, "x", "x")
    key_type = KeyType(args.key_type)
    if args.upstream_csr is not None:
        settings = {
            "trust_domain": args.trust_domain,
            "profile": args.profile,
            "minimum": args.min_duration,
            "maximum": args.max_duration,
        }
        args.upstream_csr.write_bytes(upstream.write_csr(args.state, key_type, settings))
        what = "its successor" if existing is not None else "it"
        _progress(
            f"wrote the signing CA's CSR to {args.upstream_csr}; have the organisation sign "
            f"it, then: hello-mtls-ca import --state {args.state} CERT --chain CHAIN "
            f"(the key stays in {args.state}; {what} signs after the import)"
        )
        return 0
    if args.upstream_key is not None:
        trust_domain = existing.trust_domain if existing is not None else args.trust_domain
        given = upstream.given(
            args.upstream_cert.read_bytes(),
            args.upstream_key.read_bytes(),
            key_type=key_type,
            trust_domain=trust_domain,
        )
        if existing is not None:
            if not upstream.is_new(existing, given):
                _progress("the CA already signs under this certificate; nothing to do")
                _print_json(existing.status())
                return 0
            return _take(args.state, store, given, mode="volume")
        first = given
        _progress(f"creating an intermediate under {given.issuer.subject.rfc4514_string()}")
    else:
        first = CA.create(key_type=key_type)
        _progress(f"creating a root and an intermediate ({args.key_type}) in {store.location}")
    state = store.create(
        revocation.with_crl(
            State(
                generations=(first,),
                trust_domain=args.trust_domain,
                tls_profile=args.profile,
                minimum=minimum,
                maximum=maximum,
                upstream="volume" if args.upstream_key is not None else "none",
            )
        )
    )
    _audit(args.state, state).rotation(_who(), state, previous=None)
    _print_json(state.status())
    return 0


def _import(args: argparse.Namespace) -> int:
    store = DirectoryStore(args.state)
    key, settings = upstream.pending(args.state)
    try:
        existing: State | None = store.load()
    except StateNotFound:
        existing = None
    trust_domain = existing.trust_domain if existing is not None else settings["trust_domain"]
    new = upstream.imported(
        args.cert.read_bytes(),
        args.chain.read_bytes() if args.chain is not None else b"",
        key,
        trust_domain=trust_domain,
    )
    if existing is None:
        state = store.create(
            revocation.with_crl(
                State(
                    generations=(new,),
                    trust_domain=trust_domain,
                    tls_profile=settings["profile"],
                    minimum=durations.parse_duration(settings["minimum"]),
                    maximum=durations.parse_duration(settings["maximum"]),
                    upstream="offline",
                )
            )
        )
        _audit(args.state, state).rotation(_who(), state, previous=None)
        upstream.drop_pending(args.state)
        _progress(f"imported: the CA signs under {new.root.subject.rfc4514_string()}")
        _print_json(state.status())
        return 0
    result = _take(args.state, store, new, mode="offline")
    upstream.drop_pending(args.state)
    return result


def _take(directory: Path, store: DirectoryStore, new: CA, *, mode: str) -> int:
    """Take a CA under the organisation's root into an existing state (`upstream.adopt`)."""
    before: list[str] = []

    def change(state: State) -> State:
        before[:] = [state.phase]
        return upstream.adopt(state, new, mode=mode)

    state = store.update(change)
    if state.phase != before[0]:
        _audit(directory, state).rotation(_who(), state, previous=before[0])
        _progress(
            "a new root: both are trusted now; finish the rotation with hello-mtls-ca "
            "rotate-root (or the operator's) as for any root rotation"
        )
    else:
        _progress(
            "the successor is held: its CRL is published now, and it signs once the current "
            "one is at 2/3 of its life and a day has passed since this import"
        )
    _print_json(state.status())
    return 0


def _issue(args: argparse.Namespace) -> int:
    state = DirectoryStore(args.state).load()
    names = [args.name, *args.san]
    uris = []
    if args.namespace:
        name_rules.check_names(
            names,
            namespace=args.namespace,
            cluster_domain=args.cluster_domain,
            allowed_ips=[ipaddress.ip_network(cidr) for cidr in args.allowed_ip],
        )
        uris.append(identities.spiffe_id(state.trust_domain, args.namespace, args.service_account))
    else:
        name_rules.check_name_syntax(names)
    duration = durations.parse_duration(args.duration)
    durations.check_duration(duration, minimum=state.minimum, maximum=state.maximum)
    issued = state.signer.issue(
        *names, uris=uris, valid_for=duration, key_type=KeyType(args.key_type)
    )
    revocation.IssuedIndex(args.state).append(revocation.record_of(issued, state.signer))
    _audit(args.state, state).issuance(_who(), issued, namespace=args.namespace)
    _write(args.out, state, issued.chain_pem, issued.key_pem)
    _progress(f"issued serial {issued.serial:x} for {', '.join(names)} into {args.out}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    store = DirectoryStore(args.state)
    state = store.load()
    if args.cert is not None:
        chosen = [_record_of_file(state, args.cert)]
    else:
        records = revocation.IssuedIndex(args.state).records()
        serial = int(args.serial, 16) if args.serial is not None else None
        chosen = revocation.select(
            records, serial=serial, identity=args.identity, namespace=args.namespace
        )
        if not chosen:
            what = args.serial or args.identity or args.namespace
            raise ValueError(
                f"no unexpired certificate of {what} in the CA's index of issued certificates "
                "(one issued before the index existed, or by a signer pod whose report has not "
                "arrived: revoke it with --cert)"
            )
    new = store.update(lambda s: revocation.revoke(s, chosen, args.reason))
    serials = {r.serial for r in chosen}
    made = [r for r in new.revoked if r.serial in serials]
    revocation.announce(made, by=_who(), trail=_audit(args.state, new))
    _print_json({"revoked": [r.to_json() for r in made], "crl_number": new.crl_number})
    return 0


def _record_of_file(state: State, path: Path) -> revocation.IssuedRecord:
    if str(path) == "-":  # `hello-mtls revoke --cert` sends the PEM through kubectl exec
        leaf = inspector.parse_certificates(sys.stdin.buffer.read(), "standard input")[0]
    else:
        leaf = inspector.load(path).certificates[0]
    for ca in state.generations:
        try:
            leaf.verify_directly_issued_by(ca.intermediate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return revocation.record_for(leaf, ca.intermediate)
    where = "the certificate on standard input" if str(path) == "-" else str(path)
    raise ValueError(f"{where} was not issued by an intermediate of this CA")


def _crl(args: argparse.Namespace) -> int:
    sys.stdout.write(DirectoryStore(args.state).load().crl_pem.decode())
    return 0


def _provisioner(args: argparse.Namespace) -> int:
    state = DirectoryStore(args.state).load()
    uri = identities.provisioner_id(state.trust_domain, args.name, role=args.role)
    duration = durations.parse_duration(args.duration)
    durations.check_duration(duration, minimum=state.minimum, maximum=state.maximum)
    issued = state.signer.issue(
        uris=[uri], common_name=args.name, valid_for=duration, client_only=True
    )
    _audit(args.state, state).issuance(_who(), issued)
    _write(args.out, state, issued.chain_pem, issued.key_pem)
    _progress(f"issued {args.role} credential {uri} into {args.out}")
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        state = DirectoryStore(args.state).load()
    except StateNotFound:
        if not (args.state / upstream.PENDING).is_file():
            raise
        _print_json(upstream.awaiting_status(args.state))
        return 0
    _print_json(state.status())
    return 0


def _inspect(args: argparse.Namespace) -> int:
    address = inspector.parse_target(args.target)
    if address is None:
        chain = inspector.load(Path(args.target))
    else:
        chain = inspector.fetch(*address, timeout=args.timeout, credential=args.cert_dir)
    bundle = args.ca or chain.bundle
    report = inspector.inspect(
        args.target,
        chain,
        roots=inspector.read_bundle(bundle) if bundle else None,
        bundle=bundle,
        now=datetime.datetime.now(datetime.UTC),
        name=args.name,
        namespace=args.namespace,
        cluster_domain=args.cluster_domain,
        crl=crl.read_bytes() if (crl := args.crl or chain.crl) is not None else None,
    )
    if args.json:
        _print_json(dataclasses.asdict(report))
    else:
        print(inspector.render(report))
    failed = report.verified is False or (report.policy or "").startswith("FAILS")
    return 2 if failed else 0


def _rotate_root(args: argparse.Namespace) -> int:
    store = DirectoryStore(args.state)
    previous: list[str] = []

    def step(state: State) -> State:
        expected = args.from_phase or state.phase
        _progress(f"advancing root rotation from '{expected}'")
        previous[:] = [expected]
        return state.rotated(expected=expected)

    new = store.update(step)
    _audit(args.state, new).rotation(_who(), new, previous=previous[0])
    _print_json(new.status())
    return 0


def _trail(state: Path) -> Path:
    directory = state / "audit"
    if not directory.is_dir():
        raise ValueError(f"no audit trail in {directory}")
    return directory


def _audit_verify(args: argparse.Namespace) -> int:
    directory = _trail(args.state)
    if args.ca:
        bundle = inspector.read_bundle(args.ca)
    else:
        bundle = [ca.root for ca in DirectoryStore(args.state).load().generations]
    verdict = audit.verify(directory, bundle)
    if args.json:
        _print_json(dataclasses.asdict(verdict))
    else:
        for note in verdict.notes:
            print(f"note: {note}")
        if verdict.intact:
            print(f"intact: {verdict.records} records, {verdict.signed} under a signed head")
        else:
            print(f"TAMPERED: {verdict.problem}")
    return 0 if verdict.intact else 2


def _audit_show(args: argparse.Namespace) -> int:
    directory = _trail(args.state)
    now = datetime.datetime.now(datetime.UTC)
    since = _moment(args.since, now) if args.since else None
    until = _moment(args.until, now) if args.until else None
    serial = args.serial.lower().removeprefix("0x").replace(":", "") if args.serial else None
    for record in audit.read(directory):
        what = record["what"]
        moment = datetime.datetime.fromisoformat(record["time"])
        if (since and moment < since) or (until and moment > until):
            continue
        if args.kind and record["kind"] not in args.kind:
            continue
        if args.namespace and what.get("namespace") != args.namespace:
            continue
        if serial and str(what.get("serial") or "").lstrip("0") != serial.lstrip("0"):
            continue
        if args.identity and args.identity not in (
            record["by"],
            what.get("spiffe_id"),
            *(what.get("names") or []),
        ):
            continue
        if args.json:
            print(audit.canonical(record).decode())  # the line as stored: its hash is the chain's
        else:
            print(_summary(record))
    return 0


def _summary(record: dict[str, object]) -> str:
    what = record["what"]
    assert isinstance(what, dict)
    details = []
    for key in ("step", "names", "spiffe_id", "namespace", "serial", "reason", "message"):
        value = what.get(key)
        if value:
            details.append(f"{key}={','.join(value) if isinstance(value, list) else value}")
    if record["kind"] == "head":
        details.append(f"signs records 1-{what['records']}")
    return f"{record['time']} #{record['seq']} {record['kind']} by {record['by']} " + " ".join(
        details
    )


def _moment(text: str, now: datetime.datetime) -> datetime.datetime:
    """An RFC 3339 time, or a duration (``90m``) that long before ``now``."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        try:
            return now - durations.parse_duration(text)
        except ValueError:
            raise ValueError(
                f"'{text}' is neither a time (2026-12-07T09:00:00Z) nor a duration (90m)"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _audit(state_dir: Path, state: State) -> audit.AuditLog:
    return audit.AuditLog(state_dir / "audit", signing=lambda: state.signer)


def _who() -> str:
    """Who ran the CLI, for the audit trail: it holds no credential, only the state."""
    uid = os.getuid()
    try:
        import pwd

        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = "?"
    return f"hello-mtls-ca CLI, user {user} (uid {uid}) on {socket.gethostname()}"


def _serve(args: argparse.Namespace) -> int:
    import logging

    from .gunicorn_app import ServeOptions, serve
    from .gunicorn_worker import ConnectionLimits

    names = list(args.serving_name)
    if not names:
        services = (args.service_name or ["hello-mtls-ca"]) if args.namespace else []
        for service in services:
            namespace = args.namespace
            names += [service, f"{service}.{namespace}", f"{service}.{namespace}.svc"]
            names.append(f"{service}.{namespace}.svc.{args.cluster_domain}")
        names += ["localhost", "127.0.0.1", "::1"]
    if (args.state is None) == (args.root_holder is None):
        raise ValueError("serve needs --state (the root holder) or --root-holder (a signer)")
    root_holder = None
    if args.root_holder:
        if not (args.root_ca and args.token_file):
            raise ValueError("--root-holder needs --root-ca and --token-file")
        root_holder = RootHolder(args.root_holder, args.root_ca, args.token_file)
    signers = None
    if args.material_bind:
        namespace, _, account = (args.signer_service_account or "").partition("/")
        if not (namespace and account):
            raise ValueError("--material-bind needs --signer-service-account NAMESPACE/NAME")
        signers = (namespace, account, args.signer_audience)
    name_rules.check_name_syntax(names)
    options = ServeOptions(
        state=args.state,
        create_if_missing=args.create_if_missing,
        bind=args.bind,
        sign_bind=args.sign_bind,
        namespace=args.namespace,
        workers=args.workers,
        sign_workers=args.sign_workers,
        threads=args.threads,
        limits=ConnectionLimits(
            handshake_timeout=args.handshake_timeout,
            request_timeout=args.request_timeout,
            per_address=args.max_connections_per_address,
        ),
        max_connections=args.max_connections,
        material_bind=args.material_bind,
        signers=signers,
        root_holder=root_holder,
        fetch_interval=args.fetch_interval,
        audit_head_interval=args.audit_head_interval,
        upstream_dir=args.upstream_dir,
        upstream_offline=args.upstream_offline,
        serving_names=tuple(names),
        serving_duration=durations.parse_duration(args.serving_duration),
        tls_dir=args.tls_dir,
        provisioner_secret=args.provisioner_secret or None,
        provisioner_duration=durations.parse_duration(args.provisioner_duration),
        upkeep_interval=args.upkeep_interval,
        refresh_interval=args.refresh_interval,
        trust_domain=args.trust_domain,
        profile=args.profile,
        key_type=args.key_type,
        cluster_domain=args.cluster_domain,
        extra_allowed=name_rules.parse_extra_allowed(args.extra_allowed),
        allowed_ips=name_rules.parse_allowed_ips(args.allowed_ips),
        minimum=durations.parse_duration(args.min_duration) if args.min_duration else None,
        maximum=durations.parse_duration(args.max_duration) if args.max_duration else None,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(name)s] %(message)s")
    where = f"https://{args.bind}" + (
        f" (POST /sign: https://{args.sign_bind})" if args.sign_bind else ""
    )
    if args.material_bind:
        where += f" (POST /signing-material: https://{args.material_bind})"
    source = args.state or f"memory, from the root holder {args.root_holder}"
    _progress(f"serving the CA in {source} on {where}")
    return serve(options)


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _write(out: Path, state: State, chain: bytes, key: bytes | None) -> None:
    assert key is not None  # the CLI always makes the key itself
    layout.write_version(
        out,
        layout.version_files(
            chain, key, state.bundle_pem, tls_profiles.render(state.tls_profile), state.crl_pem
        ),
    )


def _progress(message: str) -> None:
    print(f"hello-mtls-ca: {message}", file=sys.stderr)


def _print_json(document: object) -> None:
    print(json.dumps(document, indent=2))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hello-mtls-ca", description="The hello-mtls certificate authority."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    state_help = "CA state directory (in a cluster: on a volume only the CA's pod mounts)"

    init = commands.add_parser("init", help="create a root and an intermediate CA")
    init.add_argument("--state", required=True, type=Path, help=state_help)
    init.add_argument(
        "--trust-domain", default=name_rules.CLUSTER_DOMAIN, help="SPIFFE trust domain"
    )
    init.add_argument("--profile", default="intermediate", choices=list(tls_profiles.PROFILES))
    init.add_argument("--key-type", default=KeyType.ECDSA_P256.value, choices=_KEY_TYPES)
    init.add_argument("--min-duration", default="5m", help="shortest leaf lifetime (default 5m)")
    init.add_argument("--max-duration", default="30d", help="longest leaf lifetime (default 30d)")
    init.add_argument(
        "--upstream-csr",
        type=Path,
        metavar="FILE",
        help="offline root: write a CSR for the signing CA to FILE for the organisation to sign "
        "(the key stays in --state), then run import; on an existing CA, for its successor",
    )
    init.add_argument(
        "--upstream-key",
        type=Path,
        metavar="KEY",
        help="root on a volume: the key of the organisation's certificate (--upstream-cert), "
        "that signs the CA's intermediates",
    )
    init.add_argument(
        "--upstream-cert",
        type=Path,
        metavar="CERT",
        help="root on a volume: the organisation's root, or a CA certificate followed by its "
        "chain up to and including the root",
    )
    init.set_defaults(run=_init)

    imp = commands.add_parser(
        "import", help="offline root: take the signing CA the organisation signed from the CSR"
    )
    imp.add_argument("--state", required=True, type=Path, help=state_help)
    imp.add_argument("cert", type=Path, help="the signed certificate (PEM)")
    imp.add_argument(
        "--chain",
        type=Path,
        help="the organisation's certificates above it, up to and including its root (PEM)",
    )
    imp.set_defaults(run=_import)

    issue = commands.add_parser("issue", help="issue a key and certificate into a directory")
    issue.add_argument("--state", required=True, type=Path, help=state_help)
    issue.add_argument("--name", required=True, help="primary DNS name or IP (also the CN)")
    issue.add_argument("--san", action="append", default=[], help="another DNS name or IP")
    issue.add_argument("--duration", default="24h", help="lifetime, e.g. 90m, 24h (default 24h)")
    issue.add_argument("--namespace", help="apply the namespace name rule; add a SPIFFE ID")
    issue.add_argument("--service-account", default="default", help="for the SPIFFE ID")
    issue.add_argument("--cluster-domain", default=name_rules.CLUSTER_DOMAIN)
    issue.add_argument(
        "--allowed-ip",
        action="append",
        default=[],
        metavar="CIDR",
        help="with --namespace: a network whose addresses this certificate may name (repeatable; "
        "none by default; loopback and link-local only by a network inside their range)",
    )
    issue.add_argument("--key-type", default=KeyType.ECDSA_P256.value, choices=_KEY_TYPES)
    issue.add_argument("--out", required=True, type=Path, help="certificate directory to write")
    issue.set_defaults(run=_issue)

    prov = commands.add_parser(
        "provisioner", help="issue a client credential for the CA service (POST /sign ...)"
    )
    prov.add_argument("--state", required=True, type=Path, help=state_help)
    prov.add_argument("--name", required=True, help="credential name, one DNS label")
    prov.add_argument(
        "--role",
        default=identities.PROVISIONER,
        choices=identities.ROLES,
        help="provisioner (the operator's: POST /sign for a namespace, moving on a root rotation) "
        "or admin (also POST /sign without a namespace and starting a root rotation); "
        "default %(default)s",
    )
    prov.add_argument("--duration", default="7d", help="lifetime (default 7d)")
    prov.add_argument("--out", required=True, type=Path, help="certificate directory to write")
    prov.set_defaults(run=_provisioner)

    srv = commands.add_parser("serve", help="run the HTTPS CA service (gunicorn)")
    srv.add_argument(
        "--state",
        type=Path,
        help=f"{state_help}; the root holder's (a signer has --root-holder instead)",
    )
    srv.add_argument(
        "--create-if-missing",
        action="store_true",
        help="create a root and an intermediate in --state if it holds no CA (a first start in "
        "a cluster); without it a missing state is an error",
    )
    srv.add_argument("--bind", default="0.0.0.0:8443", help="HOST:PORT (default %(default)s)")
    srv.add_argument(
        "--sign-bind",
        help="HOST:PORT that alone serves POST /sign and POST /rotate-root (and the rest), so a "
        "NetworkPolicy can admit only the operator to it; default: everything on --bind",
    )
    srv.add_argument(
        "--namespace",
        help="in a cluster: the CA's namespace, for its Service names and the operator's "
        "provisioner Secret",
    )
    srv.add_argument(
        "--workers",
        type=_at_least_one,
        default=2,
        help="gunicorn worker processes (with --sign-bind: those of --bind; default 2)",
    )
    srv.add_argument(
        "--sign-workers",
        type=_at_least_one,
        default=2,
        help="with --sign-bind: worker processes of their own for it, so that no client of "
        "--bind can take their time (default 2); a signer's answer on an event loop each, "
        "the root holder's on --threads threads each",
    )
    srv.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
    srv.add_argument(
        "--handshake-timeout",
        type=_seconds,
        default=5.0,
        help="seconds a client has from connecting to finishing its TLS handshake (default 5)",
    )
    srv.add_argument(
        "--request-timeout",
        type=_seconds,
        default=10.0,
        help="seconds a client has to send a whole request, from its handshake or its first "
        "byte on a kept-alive connection, and the service to answer it (default 10)",
    )
    srv.add_argument(
        "--max-connections",
        type=_at_least_one,
        default=256,
        help="open connections per worker; more wait in the listen queue (default 256)",
    )
    srv.add_argument(
        "--max-connections-per-address",
        type=_at_least_one,
        default=64,
        help="open connections per worker from one client address; another closes its oldest "
        "connection still handshaking or sending its request (default 64)",
    )
    srv.add_argument(
        "--serving-name",
        action="append",
        default=[],
        help="name in the service's own certificate; repeatable (default: localhost, 127.0.0.1, "
        "::1, and the Service names in a cluster)",
    )
    srv.add_argument(
        "--service-name",
        action="append",
        help="in-cluster Service name, for the serving certificate; repeatable "
        "(default hello-mtls-ca)",
    )
    srv.add_argument(
        "--material-bind",
        help="root holder: HOST:PORT that serves POST /signing-material (the signing "
        "intermediate and its key) to signer pods, and nothing else; default: not served",
    )
    srv.add_argument(
        "--signer-service-account",
        metavar="NAMESPACE/NAME",
        help="with --material-bind: the signers' ServiceAccount; a caller's token must be one "
        "of its (checked by TokenReview)",
    )
    srv.add_argument(
        "--signer-audience",
        default="hello-mtls-ca-signer",
        help="with --material-bind: the audience the signers' tokens must be for "
        "(default %(default)s)",
    )
    srv.add_argument(
        "--root-holder",
        metavar="URL",
        help="run as a signer: fetch the signing material from the root holder at URL "
        "(https://HOST:PORT of its --material-bind) instead of holding a --state",
    )
    srv.add_argument(
        "--root-ca", type=Path, help="with --root-holder: PEM roots its certificate chains to"
    )
    srv.add_argument(
        "--token-file",
        type=Path,
        help="with --root-holder: the projected ServiceAccount token to prove this is a signer "
        "(read again on every fetch)",
    )
    srv.add_argument(
        "--fetch-interval",
        type=_seconds,
        default=30.0,
        help="with --root-holder: seconds between fetches of the material (default 30)",
    )
    srv.add_argument(
        "--cluster-domain",
        default=name_rules.CLUSTER_DOMAIN,
        help="for the namespace name rule and the in-cluster serving names",
    )
    srv.add_argument(
        "--extra-allowed",
        default=os.environ.get("HELLO_MTLS_EXTRA_ALLOWED", "{}"),
        help='names allowed beyond the namespace rule, as JSON {"NAMESPACE": ["name", '
        '"*.suffix"]} (env HELLO_MTLS_EXTRA_ALLOWED, the operator\'s format; default {})',
    )
    srv.add_argument(
        "--allowed-ips",
        default=os.environ.get("HELLO_MTLS_ALLOWED_IPS", "{}"),
        help='IP addresses pods of a namespace may have, as JSON {"NAMESPACE": ["10.1.0.0/16", '
        '"10.2.0.9"]} (env HELLO_MTLS_ALLOWED_IPS, the operator\'s format; default {}: none)',
    )
    srv.add_argument("--serving-duration", default="24h", help="serving cert lifetime (24h)")
    srv.add_argument("--tls-dir", type=Path, help="serving cert directory (default: a temp dir)")
    srv.add_argument(
        "--provisioner-secret",
        default="hello-mtls-operator-provisioner",
        help="with --namespace: Secret for the operator's credential, renewed at 2/3 of its "
        "life ('' to disable; default %(default)s)",
    )
    srv.add_argument("--provisioner-duration", default="7d", help="its lifetime (default 7d)")
    srv.add_argument(
        "--upkeep-interval",
        type=float,
        default=30.0,
        help="seconds between renewal checks (default 30)",
    )
    srv.add_argument(
        "--refresh-interval",
        type=float,
        default=0.0,
        help="seconds between checks for state changes (a stat; default 0: every request)",
    )
    srv.add_argument(
        "--audit-head-interval",
        type=_seconds,
        default=audit.HEAD_SECONDS,
        help="seconds within which an audit record gets its signed head (default %(default)g; "
        "also one every 1000 records)",
    )
    srv.add_argument(
        "--trust-domain", default=name_rules.CLUSTER_DOMAIN, help="for a state created here"
    )
    upstream_mode = srv.add_mutually_exclusive_group()
    upstream_mode.add_argument(
        "--upstream-dir",
        type=Path,
        help="root holder, root on a volume: a directory with the organisation's certificate "
        "(tls.crt, and ca.crt when its root is not in it) and key (tls.key); read at every "
        "start, a changed one is taken as by init --upstream-key",
    )
    upstream_mode.add_argument(
        "--upstream-offline",
        action="store_true",
        help="root holder, offline root: with no state, write the signing CA's CSR to "
        "--state/upstream.csr (and the log) and wait for hello-mtls-ca import",
    )
    srv.add_argument(
        "--min-duration",
        help="shortest leaf lifetime, written into the state at start (default: the state's; 5m)",
    )
    srv.add_argument(
        "--max-duration",
        help="longest leaf lifetime, written into the state at start (default: the state's; 30d)",
    )
    srv.add_argument(
        "--profile",
        choices=list(tls_profiles.PROFILES),
        help="TLS profile, written into the state at start (default: the state's; intermediate)",
    )
    srv.add_argument(
        "--key-type",
        default=KeyType.ECDSA_P256.value,
        choices=_KEY_TYPES,
        help="CA key type for a state created here",
    )
    srv.set_defaults(run=_serve)

    rotate = commands.add_parser("rotate-root", help="advance the root rotation by one step")
    rotate.add_argument("--state", required=True, type=Path, help=state_help)
    rotate.add_argument(
        "--from",
        dest="from_phase",
        choices=list(Phase),
        help="only advance if the rotation is in this phase",
    )
    rotate.set_defaults(run=_rotate_root)

    look = commands.add_parser(
        "inspect",
        help="show and verify what a certificate file, a certificate directory or a server"
        " presents (exit status 2 when it does not verify or fails the policy)",
    )
    look.add_argument(
        "target", help="a PEM/DER file, a certificate directory (tls.crt, ca.crt) or HOST:PORT"
    )
    look.add_argument(
        "--ca",
        type=Path,
        help="trust bundle (PEM) to verify against (default: a directory's own ca.crt)",
    )
    look.add_argument(
        "--crl",
        type=Path,
        help="the CA's CRLs (PEM, as GET /crl serves them) to check the leaf against "
        "(default: a directory's own ca.crl)",
    )
    look.add_argument("--name", help="a DNS name or IP address the certificate must carry")
    look.add_argument("--namespace", help="check the names against this namespace's policy")
    look.add_argument("--cluster-domain", default=name_rules.CLUSTER_DOMAIN)
    look.add_argument(
        "--cert-dir",
        type=Path,
        help="HOST:PORT: present this certificate directory's certificate to the server",
    )
    look.add_argument("--timeout", type=float, default=10.0, help="HOST:PORT: seconds")
    look.add_argument("--json", action="store_true", help="one JSON document on stdout")
    look.set_defaults(run=_inspect)

    rev = commands.add_parser(
        "revoke",
        help="revoke certificates (they go on the CRL; their keys are never signed again)",
    )
    rev.add_argument("--state", required=True, type=Path, help=state_help)
    which = rev.add_mutually_exclusive_group(required=True)
    which.add_argument("--serial", help="the certificate of this serial (hex, as the CA prints)")
    which.add_argument(
        "--identity", help="every certificate carrying this DNS name, IP address or SPIFFE ID"
    )
    which.add_argument("--namespace", help="every certificate of a workload of this namespace")
    which.add_argument(
        "--cert",
        type=Path,
        help="this certificate (PEM or DER file, a certificate directory, or - for standard "
        "input): also one the index does not know",
    )
    rev.add_argument(
        "--reason",
        default="unspecified",
        choices=list(revocation.REASONS),
        help="RFC 5280 reason code (default %(default)s)",
    )
    rev.set_defaults(run=_revoke)

    crl = commands.add_parser("crl", help="print the CA's signed CRLs (PEM), as GET /crl serves")
    crl.add_argument("--state", required=True, type=Path, help=state_help)
    crl.set_defaults(run=_crl)

    trail = commands.add_parser("audit", help="verify or show the CA's audit trail")
    trail_commands = trail.add_subparsers(dest="audit_command", required=True)
    check = trail_commands.add_parser(
        "verify",
        help="check the hash chain and the signed heads (exit 0 intact, 2 tampered with, the "
        "first bad record named)",
    )
    check.add_argument("--state", required=True, type=Path, help=state_help)
    check.add_argument(
        "--ca",
        type=Path,
        help="trust bundle (PEM) the heads must chain to (default: the state's roots); a "
        "copy of ca.crt held elsewhere checks a state you do not trust",
    )
    check.add_argument("--json", action="store_true", help="one JSON document on stdout")
    check.set_defaults(run=_audit_verify)
    show = trail_commands.add_parser("show", help="print audit records, filtered")
    show.add_argument("--state", required=True, type=Path, help=state_help)
    show.add_argument(
        "--identity",
        help="who asked (a SPIFFE ID), or a DNS name, IP or SPIFFE ID a certificate carries",
    )
    show.add_argument("--serial", help="a certificate serial, hex")
    show.add_argument("--namespace", help="records of this namespace")
    show.add_argument("--kind", action="append", choices=audit.KINDS, help="repeatable")
    show.add_argument("--since", help="RFC 3339 time, or a duration ago (e.g. 2h)")
    show.add_argument("--until", help="RFC 3339 time, or a duration ago")
    show.add_argument("--json", action="store_true", help="the records as JSON lines")
    show.set_defaults(run=_audit_show)

    status = commands.add_parser("status", help="print the CA state as JSON (no keys)")
    status.add_argument("--state", required=True, type=Path, help=state_help)
    status.set_defaults(run=_status)
    return parser
