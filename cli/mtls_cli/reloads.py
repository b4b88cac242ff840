"""Did every process reload? What the pods of an identity serve, against what its Secret holds.

A pod that exports the TLS library's metrics (``hello_mtls_tls_*``, docs/alerts.md) and says
where with ``prometheus.io/port`` (the example apps with ``--metrics-port``) is read through a
port-forward that the API server authenticates with the user's own credentials: the CLI needs
no network path to the pod, and the operator no access to every pod (docs/cli.md says why).
"""

from __future__ import annotations

import datetime
import http.client
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mtls_cli.cluster import Api, ApiError

__all__ = [
    "CURRENT",
    "DEFAULT_GRACE",
    "PORT_ANNOTATION",
    "RELOADING",
    "STALE",
    "UNKNOWN",
    "Served",
    "compare",
    "get_metrics",
    "parse_metrics",
    "read_pods",
]

PORT_ANNOTATION = "prometheus.io/port"
METRIC = "hello_mtls_tls_certificate_not_after_timestamp_seconds"
DEFAULT_GRACE = datetime.timedelta(minutes=10)
"""As the HelloMTLSStaleCertificate alert's ``for``: the kubelet updates a Secret volume within
about a minute and the apps look at their files every second, so ten minutes is no delay."""

CURRENT = "current"
"""Every process reports the Secret's serial."""
RELOADING = "reloading"
"""A process reports another serial, but the Secret's certificate is younger than the grace."""
STALE = "stale"
"""A process reports another serial although the Secret's certificate is older than the grace."""
UNKNOWN = "unknown"
"""A pod that names its metrics port could not be read."""

_TIMEOUT = 10.0
MAX_BYTES = 1 << 20
"""The most of a pod's ``/metrics`` read."""


@dataclass(frozen=True)
class Served:
    """A context of a process in a pod: the certificate it serves (``server``) or presents
    (``client``) to new connections."""

    pod: str
    side: str
    pid: str
    serial: str


def parse_metrics(text: str, pod: str, identity: str) -> list[Served]:
    """The contexts of ``identity`` in a ``/metrics`` exposition (other identities are left out).

    Raises:
        ValueError: the text is not the Prometheus exposition format.
    """
    found = []
    for family in text_string_to_metric_families(text):
        if family.name != METRIC:
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("identity") == identity:
                found.append(Served(pod, labels["side"], labels["pid"], labels["serial"]))
    return sorted(found, key=lambda s: (s.pod, s.side, s.pid))


def read_pods(
    api: Api, namespace: str, pods: Iterable[Mapping[str, Any]], identity: str
) -> tuple[list[Served], list[str]]:
    """What the pods that name a metrics port serve for ``identity``, and the pods that could
    not be read (``pod: why``). Pods without the annotation are not read."""
    served: list[Served] = []
    errors = []
    for pod in pods:
        meta = pod["metadata"]
        port = (meta.get("annotations") or {}).get(PORT_ANNOTATION, "")
        if not port:
            continue
        try:
            text = _get_metrics(api, namespace, meta["name"], int(port))
            served += parse_metrics(text, meta["name"], identity)
        except (OSError, ValueError, ApiError, http.client.HTTPException) as error:
            errors.append(f"{meta['name']}: {error}")
    return served, errors


def compare(
    secret_serial: str,
    issued: datetime.datetime | None,
    served: Iterable[Served],
    now: datetime.datetime,
    grace: datetime.timedelta,
) -> str:
    """`CURRENT`, `RELOADING` or `STALE` (see each); ``issued`` is the Secret certificate's
    notBefore (None: unknown, and then another serial is stale at once)."""
    if all(s.serial == secret_serial for s in served):
        return CURRENT
    if issued is not None and now - issued < grace:
        return RELOADING
    return STALE


def get_metrics(connection: http.client.HTTPConnection) -> str:
    """``GET /metrics`` on ``connection``, which is closed after; at most `MAX_BYTES` of it
    (what a pod answers is untrusted input).

    Raises:
        OSError: no answer in time, an answer other than 200, or a longer one.
        http.client.HTTPException: an answer that is not HTTP.
    """
    try:
        connection.request("GET", "/metrics", headers={"Accept": "text/plain"})
        response = connection.getresponse()
        body = response.read(MAX_BYTES + 1)
    finally:
        connection.close()
    if response.status != 200:
        raise OSError(f"GET /metrics on port {connection.port} answered {response.status}")
    if len(body) > MAX_BYTES:
        raise OSError(f"GET /metrics on port {connection.port}: more than {MAX_BYTES} bytes")
    return body.decode(errors="replace")


def _get_metrics(api: Api, namespace: str, pod: str, port: int) -> str:
    connection = http.client.HTTPConnection(pod, port, timeout=_TIMEOUT)
    raw = api.connect(namespace, pod, port)
    raw.settimeout(_TIMEOUT)
    connection.sock = raw
    return get_metrics(connection)
