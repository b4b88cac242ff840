"""``hello-mtls`` (also ``kubectl hello-mtls``): ``check``, ``status``, ``renew``, ``revoke`` and
``rotate-root``.

Exit status: 0 when everything checked is fine (``check``) or the command did what it said,
1 when a check failed or the command could not, 2 for a bad command line (also one the CA's
``hello-mtls-ca`` refused as such).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from mtls_cli import ca_admin, checks, identities, reloads
from mtls_cli.ca_status import CAReport, read_ca
from mtls_cli.cluster import CA_DEPLOYMENT, Api, ApiError, KubeApi, ca_connect
from mtls_cli.times import left_of, parse_time
from mtls_contract.marks import ANNOTATION_RENEW, ANNOTATION_SERIAL, LABEL_MANAGED
from mtls_contract.phases import Phase

__all__ = ["main", "read_installed_ca"]

DEFAULT_NAMESPACE = "hello-mtls"
RENEW_WAIT_SECONDS = 60.0


def read_installed_ca(api: Api, namespace: str) -> CAReport:
    """The installed CA's report, through a port-forward to its pod."""
    hostname = f"{CA_DEPLOYMENT}.{namespace}.svc"
    return read_ca(lambda: ca_connect(api, namespace)[1], hostname)


def main(
    argv: Sequence[str] | None = None,
    *,
    api: Callable[[str | None], Api] | None = None,
    read: checks.ReadCA = read_installed_ca,
    out: TextIO | None = None,
) -> int:
    """Run one command; ``api`` and ``read`` replace the cluster in unit tests."""
    args = _parser().parse_args(argv)
    stream = out or sys.stdout
    try:
        client = (api or KubeApi)(args.context)
    except Exception as error:  # the kubeconfig loader raises several kinds
        print(f"hello-mtls: cannot use the kubeconfig: {error}", file=sys.stderr)
        return 1
    try:
        return int(args.run(args, client, read, stream))
    except ApiError as error:
        print(f"hello-mtls: {error}", file=sys.stderr)
        return 1
    except ca_admin.CARefusal as error:
        print(f"hello-mtls: the CA refused: {error}", file=sys.stderr)
        return 2 if error.status == 2 else 1
    finally:
        close = getattr(client, "close", None)
        if close is not None:
            close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hello-mtls",
        description="Check, show, renew and revoke what hello-mtls installed; rotate its root.",
    )
    parser.add_argument("--context", help="the kubeconfig context (default: the current one)")
    parser.add_argument(
        "--install-namespace",
        default=DEFAULT_NAMESPACE,
        help=f"where the CA and operator run (default {DEFAULT_NAMESPACE})",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="check the install; exit status 1 if a check fails")
    check.add_argument(
        "--no-network-probe",
        action="store_true",
        help="do not start the short-lived pod that shows the CA's signing port is closed to"
        " other pods (it needs the right to create pods in the install's namespace)",
    )
    check.add_argument(
        "--release",
        default=checks.DEFAULT_RELEASE,
        help="the Helm release of the install, which names its cluster-scoped objects"
        f" (default {checks.DEFAULT_RELEASE})",
    )
    check.set_defaults(run=_check)
    status = commands.add_parser("status", help="every identity, the root rotation, the CA")
    status.add_argument("-n", "--namespace", help="only this namespace's identities")
    status.add_argument("-o", "--output", choices=("text", "json"), default="text")
    status.add_argument(
        "--stale-after",
        type=_seconds,
        default=reloads.DEFAULT_GRACE.total_seconds(),
        metavar="SECONDS",
        help="a pod serving an older certificate than its Secret's for longer is stale"
        f" (default {reloads.DEFAULT_GRACE.total_seconds():g})",
    )
    status.add_argument(
        "--no-served",
        action="store_true",
        help="do not read what the pods serve (one port-forward per pod with prometheus.io/port)",
    )
    status.set_defaults(run=_status)
    renew = commands.add_parser("renew", help="have the operator re-issue one Secret now")
    renew.add_argument("identity", metavar="NS/SECRET", help="e.g. shop/web-tls")
    renew.add_argument(
        "--no-wait", action="store_true", help="return once asked, not once re-issued"
    )
    renew.set_defaults(run=_renew)
    revoke = commands.add_parser(
        "revoke",
        help="revoke certificates in the CA's pod (pods/exec): every server refuses them",
    )
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--serial", help="the certificate of this serial (hex, as the CA prints)")
    which.add_argument(
        "--identity", help="every certificate carrying this DNS name, IP address or SPIFFE ID"
    )
    which.add_argument("--namespace", help="every certificate of a workload of this namespace")
    which.add_argument(
        "--cert",
        type=Path,
        help="this certificate (a PEM or DER file here, or a certificate directory's tls.crt):"
        " also one signed by a CA signer pod",
    )
    revoke.add_argument(
        "--reason", default="unspecified", help="RFC 5280 reason, e.g. keyCompromise"
    )
    revoke.add_argument("-o", "--output", choices=("text", "json"), default="text")
    revoke.set_defaults(run=_revoke)
    rotate = commands.add_parser(
        "rotate-root",
        help="start a root rotation in the CA's pod (pods/exec); the operator finishes it",
    )
    rotate.set_defaults(run=_rotate_root)
    return parser


def _check(args: argparse.Namespace, api: Api, read: checks.ReadCA, out: TextIO) -> int:
    now = datetime.datetime.now(datetime.UTC)
    found = checks.run_checks(
        api,
        args.install_namespace,
        read,
        now,
        probe=not args.no_network_probe,
        release=args.release,
    )
    for check in found:
        print(f"{'✓' if check.ok else '✗'} {check.text}", file=out)
        if not check.ok and check.fix:
            print(f"    fix: {check.fix}", file=out)
    failed = sum(not c.ok for c in found)
    print(f"\n{len(found) - failed} passed, {failed} failed", file=out)
    return 1 if failed else 0


def _status(args: argparse.Namespace, api: Api, read: checks.ReadCA, out: TextIO) -> int:
    now = datetime.datetime.now(datetime.UTC)
    namespace = args.install_namespace
    operator = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{checks.OPERATOR}")
    grace = None if args.no_served else datetime.timedelta(seconds=args.stale_after)
    fraction = identities.renew_fraction(operator)
    found = identities.identities(api, args.namespace, fraction, now, grace)
    ca: dict[str, Any]
    try:
        ca = dict(read(api, namespace).status)
    except (OSError, ValueError, ApiError) as error:
        ca = {"error": str(error)}
    rotation = identities.rotation(ca, found)
    signers = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{checks.SIGNERS}")
    if signers is not None:
        ca["signers"] = {
            "replicas": int(signers["spec"].get("replicas", 1)),
            "ready": int((signers.get("status") or {}).get("readyReplicas") or 0),
        }
    if args.output == "json":
        document = {
            "identities": [i.as_json() for i in found],
            "rotation": {"phase": rotation.phase, "waiting_for": list(rotation.waiting_for)},
            "ca": ca,
        }
        json.dump(document, out, indent=2)
        print(file=out)
        return 0
    _print_identities(found, out)
    print(f"\nRoot rotation: {rotation.phase}", file=out)
    for waiting in rotation.waiting_for:
        print(f"  waits for {waiting}", file=out)
    _print_ca(ca, now, out)
    return 0


def _renew(args: argparse.Namespace, api: Api, _read: checks.ReadCA, out: TextIO) -> int:
    namespace, _, name = args.identity.partition("/")
    if not namespace or not name:
        print("hello-mtls: renew takes NS/SECRET, e.g. shop/web-tls", file=sys.stderr)
        return 2
    path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    secret = api.get(path)
    labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
    if secret is None or labels.get(LABEL_MANAGED) != "true":
        print(
            f"hello-mtls: no Secret {namespace}/{name} managed by hello-mtls (a pod-certificate"
            " pod's certificate is the kubelet's: delete the pod to get a new one)",
            file=sys.stderr,
        )
        return 1
    before = (secret["metadata"].get("annotations") or {}).get(ANNOTATION_SERIAL, "")
    asked = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    api.merge_patch(path, {"metadata": {"annotations": {ANNOTATION_RENEW: asked}}})
    print(f"asked the operator to re-issue {namespace}/{name} (serial {before})", file=out)
    if args.no_wait:
        return 0
    deadline = time.monotonic() + RENEW_WAIT_SECONDS
    while time.monotonic() < deadline:
        current = api.get(path) or {}
        annotations = (current.get("metadata") or {}).get("annotations") or {}
        serial = annotations.get(ANNOTATION_SERIAL, "")
        if ANNOTATION_RENEW not in annotations and serial != before:
            print(f"re-issued: serial {serial}", file=out)
            return 0
        time.sleep(1)
    print(
        f"hello-mtls: {namespace}/{name} was not re-issued within {RENEW_WAIT_SECONDS:g} s;"
        " run hello-mtls check",
        file=sys.stderr,
    )
    return 1


def _revoke(args: argparse.Namespace, api: Api, _read: checks.ReadCA, out: TextIO) -> int:
    stdin = None
    if args.cert is not None:
        try:
            stdin = ca_admin.cert_bytes(args.cert)
        except ValueError as error:
            print(f"hello-mtls: {error}", file=sys.stderr)
            return 1
    command = ca_admin.revoke_arguments(
        serial=args.serial,
        identity=args.identity,
        namespace=args.namespace,
        cert=stdin is not None,
        reason=args.reason,
    )
    answer = ca_admin.ca_command(api, args.install_namespace, "revoke", command, stdin)
    if args.output == "json":
        json.dump(answer, out, indent=2)
        print(file=out)
        return 0
    for entry in answer.get("revoked") or []:
        identity = entry.get("identity") or "?"
        print(f"revoked serial {entry['serial']} ({identity}): {entry['reason']}", file=out)
    print(
        f"CRL number {answer.get('crl_number')}: servers refuse it once their ca.crl has it;"
        " the operator re-issues a Secret's certificate at once (a pod-certificate pod: delete"
        " it for a new one)",
        file=out,
    )
    return 0


def _rotate_root(args: argparse.Namespace, api: Api, _read: checks.ReadCA, out: TextIO) -> int:
    namespace = args.install_namespace
    status = ca_admin.ca_command(api, namespace, "rotate-root", ["--from", Phase.IDLE])
    print(
        f"root rotation started: phase {status.get('phase')}; the operator takes the next"
        " steps (follow them with hello-mtls status)",
        file=out,
    )
    return 0


def _print_identities(found: list[identities.Identity], out: TextIO) -> None:
    header = (
        "NAMESPACE",
        "NAME",
        "MODE",
        "SECRET",
        "PODS",
        "SERIAL",
        "NOT AFTER",
        "RENEWS",
        "SERVED",
    )
    rows = [header] + [
        (
            i.namespace,
            i.name,
            i.mode,
            i.secret or "-",
            ",".join(i.pods),
            i.serial[:16] or "-",
            i.not_after or "-",
            i.next_renewal or "-",
            i.served_state or "-",
        )
        for i in found
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out)
    for identity in found:
        if identity.last_error:
            where = identity.secret or ",".join(identity.pods)
            print(f"! {identity.namespace}/{where}: {identity.last_error}", file=out)
        if identity.served_state == reloads.STALE:
            for process in identity.served:
                if process.serial != identity.serial:
                    print(
                        f"! {identity.namespace}/{process.pod} (pid {process.pid},"
                        f" {process.side} side) still uses serial {process.serial[:16]}, not"
                        f" its Secret's {identity.serial[:16]}: it did not reload"
                        " (docs/alerts.md#hellomtlsstalecertificate)",
                        file=out,
                    )
        for error in identity.served_errors:
            print(f"! {identity.namespace}/{error}", file=out)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _print_ca(ca: dict[str, Any], now: datetime.datetime, out: TextIO) -> None:
    if "error" in ca:
        print(f"\nCA: unreachable ({ca['error']})", file=out)
        return
    print(f"\nCA (trust domain {ca.get('trust_domain', '?')})", file=out)
    for root in ca.get("roots") or []:
        end = parse_time(root.get("not_after"))
        valid = left_of(end - now) if end else "?"
        print(f"  root {root.get('fingerprint_sha256', '')[:16]}: valid {valid}", file=out)
    signing = ca.get("signing") or {}
    end = parse_time(signing.get("intermediate_not_after"))
    if end is not None:
        fingerprint = signing.get("intermediate_fingerprint_sha256", "")[:16]
        print(f"  signing intermediate {fingerprint}: valid {left_of(end - now)}", file=out)
    if "signers" in ca:
        signers = ca["signers"]
        print(f"  signer pods: {signers['ready']}/{signers['replicas']} ready", file=out)
