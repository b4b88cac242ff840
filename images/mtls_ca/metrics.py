"""Prometheus metrics of the CA service.

gunicorn runs several worker processes, so the counters and the histogram use
prometheus-client's multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (``serve`` sets it
to a fresh directory): every worker writes its own files and ``GET /metrics`` in any worker sums
them. The expiry gauges are not kept per process at all; they are computed from the current
state at scrape time, so they are the same whichever worker answers.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from .authority import fingerprint
from .state import State

__all__ = [
    "CONNECTIONS_DROPPED",
    "CONTENT_TYPE",
    "DROP_REASONS",
    "INDEX_DROP_REASONS",
    "INDEX_REPORTS_DELIVERED",
    "INDEX_REPORTS_DROPPED",
    "INDEX_REPORTS_PENDING",
    "ISSUED",
    "REASONS",
    "REJECTED",
    "SIGNING_SECONDS",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REASONS = ("unauthenticated", "forbidden", "malformed", "policy", "too_large")
DROP_REASONS = (
    "handshake_timeout",
    "request_timeout",
    "response_timeout",
    "per_address",
    "refused",
)
INDEX_DROP_REASONS = ("queue_full", "refused", "exit")

_REGISTRY = CollectorRegistry()
ISSUED = Counter("hello_mtls_ca_issued", "Certificates signed.", registry=_REGISTRY)
REJECTED = Counter(
    "hello_mtls_ca_rejected", "Signing requests refused, by reason.", ["reason"], registry=_REGISTRY
)
SIGNING_SECONDS = Histogram(
    "hello_mtls_ca_signing_seconds",
    "Time to check and sign one accepted request.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
    registry=_REGISTRY,
)
CONNECTIONS_DROPPED = Counter(
    "hello_mtls_ca_connections_dropped",
    "Connections the service closed on a slow, idle or excess client, by reason.",
    ["reason"],
    registry=_REGISTRY,
)
INDEX_REPORTS_PENDING = Gauge(
    "hello_mtls_ca_index_reports_pending",
    "Signer: records of issued certificates waiting for the root holder's index.",
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)
INDEX_REPORTS_DELIVERED = Counter(
    "hello_mtls_ca_index_reports_delivered",
    "Signer: records of issued certificates the root holder's index took.",
    registry=_REGISTRY,
)
INDEX_REPORTS_DROPPED = Counter(
    "hello_mtls_ca_index_reports_dropped",
    "Signer: records of issued certificates that never reached the root holder's index, by reason.",
    ["reason"],
    registry=_REGISTRY,
)
for _reason in REASONS:
    REJECTED.labels(reason=_reason)
for _reason in DROP_REASONS:
    CONNECTIONS_DROPPED.labels(reason=_reason)
for _reason in INDEX_DROP_REASONS:
    INDEX_REPORTS_DROPPED.labels(reason=_reason)


class _Expiry:
    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        now = datetime.datetime.now(datetime.UTC)
        family = GaugeMetricFamily(
            "hello_mtls_ca_cert_expiry_seconds",
            "Seconds until each CA certificate expires.",
            labels=["kind", "fingerprint_sha256", "signing"],
        )
        signer = self.state.signer
        for ca in self.state.generations:
            kinds = [("root", ca.root), ("intermediate", ca.intermediate)]
            kinds += [("upstream", cert) for cert in ca.chain]
            for kind, cert in kinds:
                left = (cert.not_valid_after_utc - now).total_seconds()
                signing = "true" if ca is signer else "false"
                family.add_metric([kind, fingerprint(cert), signing], left)
        yield family
        yield GaugeMetricFamily(
            "hello_mtls_ca_upstream_renewal_due",
            "1 when an organisation's certificate this CA signs under is past 2/3 of its life "
            "with no successor given (hello-mtls-ca status says what to do), else 0.",
            value=1 if self.state.warnings(now) else 0,
        )


class _MaterialAge:
    def __init__(self, age: float) -> None:
        self.age = age

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "hello_mtls_ca_signer_material_age_seconds",
            "Seconds since this signer last fetched the signing material from the root holder.",
            value=self.age,
        )


class _Local:
    def collect(self) -> Iterator[Metric]:
        yield from _REGISTRY.collect()


def render(state: State, material_age: float | None = None) -> bytes:
    """The exposition text for ``GET /metrics``; a signer gives its ``material_age``."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Local())
    registry.register(_Expiry(state))
    if material_age is not None:
        registry.register(_MaterialAge(material_age))
    return generate_latest(registry)
