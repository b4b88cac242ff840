"""The Events the operator posts on pods (docs/operator.md#events): its last issuance, its
failures, and each pod's last error."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from mtls_cli.cluster import Api
from mtls_cli.times import parse_time

__all__ = ["ISSUED", "OperatorEvent", "issuance", "operator_events", "unresolved"]

COMPONENT = "hello-mtls-operator"
"""The ``source.component`` of the operator's Events."""
ISSUED = "Issued"
FAILURES = frozenset({"CAUnreachable", "IssueRefused"})
"""Reasons that say the operator tried to issue and could not (bad input is not among them)."""


@dataclass(frozen=True)
class OperatorEvent:
    """One Event of the operator about a pod."""

    time: datetime.datetime
    namespace: str
    pod: str
    type: str
    reason: str
    message: str


def operator_events(api: Api, namespace: str | None = None) -> list[OperatorEvent]:
    """The operator's Events (of ``namespace``, or all), oldest first."""
    path = f"/api/v1/namespaces/{namespace}/events" if namespace else "/api/v1/events"
    found = api.get(path, fieldSelector=f"source={COMPONENT}") or {}
    return sorted(
        (e for e in map(_event, found.get("items") or []) if e is not None), key=lambda e: e.time
    )


def unresolved(every: list[OperatorEvent]) -> dict[tuple[str, str], OperatorEvent]:
    """Each pod's newest Warning that no ``Issued`` Event for the same pod has followed, by
    (namespace, pod); ``every`` oldest first."""
    warnings: dict[tuple[str, str], OperatorEvent] = {}
    for event in every:
        key = (event.namespace, event.pod)
        if event.reason == ISSUED:
            warnings.pop(key, None)
        elif event.type == "Warning":
            warnings[key] = event
    return warnings


def issuance(api: Api) -> tuple[OperatorEvent | None, list[OperatorEvent]]:
    """The newest ``Issued`` Event (None if the API server keeps none), and the failures to
    issue since then that no later issuance for the same pod resolved, oldest first."""
    every = operator_events(api)
    issued = [e for e in every if e.reason == ISSUED]
    last = issued[-1] if issued else None
    failures = [
        e
        for e in unresolved(every).values()
        if e.reason in FAILURES and (last is None or e.time > last.time)
    ]
    return last, sorted(failures, key=lambda e: e.time)


def _event(item: dict[str, Any]) -> OperatorEvent | None:
    involved = item.get("involvedObject") or {}
    when = parse_time(
        item.get("lastTimestamp") or item.get("eventTime") or item.get("firstTimestamp")
    )
    if when is None or involved.get("kind") != "Pod":
        return None
    return OperatorEvent(
        time=when,
        namespace=str(involved.get("namespace") or ""),
        pod=str(involved.get("name") or ""),
        type=str(item.get("type") or ""),
        reason=str(item.get("reason") or ""),
        message=str(item.get("message") or ""),
    )
