"""``hello-mtls status``: every identity the operator keeps, where the CA's root rotation
stands and what it waits for.

An identity is a Secret and the secret-mode pods that mount it, or one pod-certificate pod (the
kubelet holds its key and certificate; docs/operator.md#pod-certificates). Only ``tls.crt`` of
a Secret is decoded; its key is never read.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from mtls_cli import events, reloads
from mtls_cli.cluster import Api
from mtls_cli.times import parse_time
from mtls_contract import durations
from mtls_contract.marks import (
    ANNOTATION_BUNDLE,
    ANNOTATION_INTERMEDIATE,
    ANNOTATION_MODE,
    ANNOTATION_NAME,
    ANNOTATION_NOT_AFTER,
    ANNOTATION_SERIAL,
    LABEL_MANAGED,
    POD_CERTIFICATE,
    SECRET_MODE,
)
from mtls_contract.phases import Phase
from mtls_operator.claims import secret_of

__all__ = ["Identity", "Rotation", "identities", "renew_fraction", "rotation"]

RENEW_FRACTION_ENV = "HELLO_MTLS_RENEW_FRACTION"


@dataclass(frozen=True)
class Identity:
    """One row of ``hello-mtls status``."""

    namespace: str
    pods: tuple[str, ...]
    name: str
    mode: str
    secret: str
    serial: str = ""
    not_before: str = ""
    not_after: str = ""
    next_renewal: str = ""
    last_error: str = ""
    served: tuple[reloads.Served, ...] = ()
    """What the processes of its pods that export metrics serve (`mtls_cli.reloads`)."""
    served_state: str = ""
    """`reloads.CURRENT`, `RELOADING`, `STALE` or `UNKNOWN`; empty when no pod was read."""
    served_errors: tuple[str, ...] = ()
    bundle_sha256: str = field(default="", repr=False)
    intermediate_sha256: str = field(default="", repr=False)

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["pods"] = list(self.pods)
        document["served"] = [asdict(s) for s in self.served]
        document["served_errors"] = list(self.served_errors)
        return document


@dataclass(frozen=True)
class Rotation:
    """The CA's root-rotation phase and what the operator waits for before the next one."""

    phase: str
    waiting_for: tuple[str, ...]


def identities(
    api: Api,
    namespace: str | None,
    fraction: float,
    now: datetime.datetime,
    grace: datetime.timedelta | None = None,
) -> list[Identity]:
    """Every identity in ``namespace`` (None: every namespace), sorted by namespace and name.

    With ``grace``, the pods of each Secret that name their metrics port are read, and a
    process that serves another serial than the Secret's after ``grace`` is `reloads.STALE`.
    """
    scope = f"/api/v1/namespaces/{namespace}" if namespace else "/api/v1"
    pods = (api.get(f"{scope}/pods") or {}).get("items") or []
    secrets = (api.get(f"{scope}/secrets", labelSelector=f"{LABEL_MANAGED}=true") or {}).get(
        "items"
    ) or []
    by_key = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in secrets}
    failures = {
        key: f"{event.reason}: {event.message}"
        for key, event in events.unresolved(events.operator_events(api, namespace)).items()
    }
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    found = []
    for pod in pods:
        meta = pod["metadata"]
        annotations = meta.get("annotations") or {}
        if ANNOTATION_NAME not in annotations or (pod.get("status") or {}).get("phase") in _ENDED:
            continue
        if annotations.get(ANNOTATION_MODE, SECRET_MODE).strip() == POD_CERTIFICATE:
            found.append(
                Identity(
                    namespace=meta["namespace"],
                    pods=(meta["name"],),
                    name=annotations[ANNOTATION_NAME].strip(),
                    mode=POD_CERTIFICATE,
                    secret="",
                    last_error=failures.get((meta["namespace"], meta["name"]), ""),
                    intermediate_sha256=annotations.get(ANNOTATION_INTERMEDIATE, ""),
                )
            )
            continue
        groups.setdefault((meta["namespace"], secret_of(annotations)), []).append(pod)
    for (pod_namespace, secret_name), members in groups.items():
        names = tuple(sorted(p["metadata"]["name"] for p in members))
        error = next(
            (failures[(pod_namespace, n)] for n in names if (pod_namespace, n) in failures), ""
        )
        identity = _secret_identity(
            pod_namespace,
            names,
            members[0]["metadata"]["annotations"][ANNOTATION_NAME].strip(),
            secret_name,
            by_key.get((pod_namespace, secret_name)),
            error,
            fraction,
        )
        if grace is not None and identity.serial:
            identity = _with_served(api, identity, members, now, grace)
        found.append(identity)
    return sorted(found, key=lambda i: (i.namespace, i.name, i.secret, i.pods))


def rotation(ca_status: Mapping[str, Any], found: list[Identity]) -> Rotation:
    """What the root rotation waits for: in ``both-trusted`` every Secret carrying the new trust
    bundle, in ``new-signing`` also every certificate from the new intermediate (a
    pod-certificate pod's at its next refresh). Signer pods are the operator's to wait for."""
    phase = str(ca_status.get("phase", ""))
    if phase in ("", Phase.IDLE):
        return Rotation(phase or "unknown", ())
    bundle = ca_status.get("bundle_sha256")
    intermediate = (ca_status.get("signing") or {}).get("intermediate_fingerprint_sha256")
    waiting = []
    for identity in found:
        what = identity.secret or "/".join(identity.pods)
        if identity.mode == SECRET_MODE and not identity.bundle_sha256:
            waiting.append(f"{identity.namespace}/{what}: its first certificate")
        elif identity.mode == SECRET_MODE and identity.bundle_sha256 != bundle:
            waiting.append(f"{identity.namespace}/{what}: the new trust bundle")
        elif phase == Phase.NEW_SIGNING and identity.intermediate_sha256 != intermediate:
            waiting.append(f"{identity.namespace}/{what}: a certificate from the new intermediate")
    return Rotation(phase, tuple(waiting))


def renew_fraction(deployment: Mapping[str, Any] | None) -> float:
    """The operator's renewal fraction from its Deployment's environment, read as the operator
    reads it; unset or unreadable there: the operator's default."""
    containers = ((deployment or {}).get("spec") or {}).get("template", {}).get("spec", {})
    for container in containers.get("containers") or []:
        for variable in container.get("env") or []:
            if variable.get("name") == RENEW_FRACTION_ENV:
                try:
                    return durations.parse_fraction(variable.get("value"))
                except (TypeError, ValueError):
                    break
    return durations.parse_fraction(durations.RENEW_FRACTION_TEXT)


_ENDED = ("Succeeded", "Failed")


def _with_served(
    api: Api,
    identity: Identity,
    pods: list[dict[str, Any]],
    now: datetime.datetime,
    grace: datetime.timedelta,
) -> Identity:
    found, errors = reloads.read_pods(api, identity.namespace, pods, identity.name)
    if errors:
        state = reloads.UNKNOWN
    elif found:
        issued = parse_time(identity.not_before)
        state = reloads.compare(identity.serial, issued, found, now, grace)
    else:
        state = ""
    return replace(identity, served=tuple(found), served_state=state, served_errors=tuple(errors))


def _secret_identity(
    namespace: str,
    pods: tuple[str, ...],
    name: str,
    secret_name: str,
    secret: Mapping[str, Any] | None,
    error: str,
    fraction: float,
) -> Identity:
    if secret is None:
        return Identity(
            namespace, pods, name, SECRET_MODE, secret_name, last_error=error or "no Secret yet"
        )
    annotations = secret["metadata"].get("annotations") or {}
    next_renewal, intermediate, not_before = "", "", ""
    chain = _chain((secret.get("data") or {}).get("tls.crt", ""))
    if chain:
        leaf = chain[0]
        start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        next_renewal = _rfc3339(start + (end - start) * fraction)
        not_before = _rfc3339(start)
        if len(chain) > 1:
            intermediate = chain[1].fingerprint(hashes.SHA256()).hex()
    return Identity(
        namespace=namespace,
        pods=pods,
        name=name,
        mode=SECRET_MODE,
        secret=secret_name,
        serial=annotations.get(ANNOTATION_SERIAL, ""),
        not_before=not_before,
        not_after=annotations.get(ANNOTATION_NOT_AFTER, ""),
        next_renewal=next_renewal,
        last_error=error,
        bundle_sha256=annotations.get(ANNOTATION_BUNDLE, ""),
        intermediate_sha256=intermediate,
    )


def _chain(encoded: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(base64.b64decode(encoded, validate=True))
    except (ValueError, binascii.Error):
        return []


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
