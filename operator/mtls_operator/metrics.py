"""Prometheus metrics of the operator, served by `serve` on their own port."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from mtls_contract.phases import Phase

__all__ = [
    "EARLIEST_EXPIRY",
    "FAILED",
    "FEDERATED_FETCH_FAILED",
    "FEDERATED_STALE",
    "ISSUANCE_SECONDS",
    "ISSUED",
    "LEADER",
    "MANAGED_SECRETS",
    "POD_CERTIFICATES",
    "POD_CERTIFICATE_SECONDS",
    "QUEUE_DEPTH",
    "RENEWED",
    "ROTATION_PENDING",
    "ROTATION_PENDING_PODS",
    "ROTATION_PHASE",
    "TRUST_REFRESHED",
    "SecretCertificate",
    "serve",
    "show_rotation_phase",
    "show_secrets",
]

ISSUED = Counter("hello_mtls_operator_issued", "Certificates issued for a Secret that had none.")
RENEWED = Counter(
    "hello_mtls_operator_renewed",
    "Certificates re-issued into an existing Secret, by reason.",
    ["reason"],
)
TRUST_REFRESHED = Counter(
    "hello_mtls_operator_trust_refreshed",
    "Secrets whose ca.crt or tls-policy.json were updated without a new leaf.",
)
FAILED = Counter(
    "hello_mtls_operator_failed",
    "Failed attempts to issue or update a Secret or answer a PodCertificateRequest, by reason.",
    ["reason"],
)
FEDERATED_STALE = Gauge(
    "hello_mtls_operator_federated_bundle_stale",
    "1 while a federated trust domain's bundle was never fetched or not for three refresh hints.",
    ["trust_domain"],
)
FEDERATED_FETCH_FAILED = Counter(
    "hello_mtls_operator_federated_bundle_fetch_failed",
    "Failed fetches of a federated trust domain's bundle endpoint.",
    ["trust_domain"],
)
ISSUANCE_SECONDS = Histogram(
    "hello_mtls_operator_issuance_seconds",
    "Time from deciding to issue to the Secret being written (key, CSR, POST /sign, API write).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POD_CERTIFICATES = Counter(
    "hello_mtls_operator_pod_certificate_requests",
    "PodCertificateRequests answered, by result: issued, denied or failed.",
    ["result"],
)
POD_CERTIFICATE_SECONDS = Histogram(
    "hello_mtls_operator_pod_certificate_seconds",
    "Time from seeing a PodCertificateRequest to its status written (checks, POST /sign, write).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LEADER = Gauge(
    "hello_mtls_operator_leader",
    "1 while this replica holds the Lease and works, 0 while it stands by.",
)
EARLIEST_EXPIRY = Gauge(
    "hello_mtls_operator_earliest_expiry_timestamp_seconds",
    "Unix time at which the first managed certificate in use expires (0 when there is none).",
)
MANAGED_SECRETS = Gauge(
    "hello_mtls_operator_managed_secrets", "Secrets the operator keeps for running pods."
)
QUEUE_DEPTH = Gauge(
    "hello_mtls_operator_queue_depth", "Secrets waiting for a worker thread to look at them."
)
ROTATION_PENDING = Gauge(
    "hello_mtls_operator_rotation_pending_secrets",
    "Managed Secrets that do not reflect the CA's root-rotation phase yet.",
)
ROTATION_PENDING_PODS = Gauge(
    "hello_mtls_operator_rotation_pending_pods",
    "Running pod-certificate pods whose certificate is not from the CA's new intermediate yet"
    " (root rotation in new-signing; the kubelet asks again at beginRefreshAt).",
)

ROTATION_PHASE = Gauge(
    "hello_mtls_operator_rotation_phase",
    "1 for the CA's root-rotation phase as the leader last read it, 0 for the others.",
    ["phase"],
)
_PHASES: set[str] = set(Phase)
for _phase in _PHASES:
    ROTATION_PHASE.labels(_phase)


def show_rotation_phase(phase: str) -> None:
    """Set `ROTATION_PHASE`: 1 for ``phase``, 0 for every other phase."""
    _PHASES.add(phase)
    for other in _PHASES:
        ROTATION_PHASE.labels(other).set(1 if other == phase else 0)


@dataclass(frozen=True)
class SecretCertificate:
    """The certificate a managed Secret holds, for the stale-certificate alert."""

    namespace: str
    secret: str
    identity: str
    """The claim's primary name: what `mtls_context` reports as the certificate's identity."""
    serial: str
    not_before: float
    not_after: float


class _Secrets:
    """``hello_mtls_operator_secret_not_{before,after}_timestamp_seconds``: a series per Secret."""

    def __init__(self) -> None:
        self.shown: tuple[SecretCertificate, ...] = ()

    def collect(self) -> Iterator[Metric]:
        labels = ["secret_namespace", "secret", "identity", "serial"]
        not_before = GaugeMetricFamily(
            "hello_mtls_operator_secret_not_before_timestamp_seconds",
            "Unix time from which the certificate in each managed Secret is valid.",
            labels=labels,
        )
        not_after = GaugeMetricFamily(
            "hello_mtls_operator_secret_not_after_timestamp_seconds",
            "Unix time at which the certificate in each managed Secret expires; its serial "
            "(lowercase hex) is a label, to compare with what the pods serve.",
            labels=labels,
        )
        for row in self.shown:
            values = [row.namespace, row.secret, row.identity, row.serial]
            not_before.add_metric(values, row.not_before)
            not_after.add_metric(values, row.not_after)
        yield from (not_before, not_after)


_SECRETS = _Secrets()
REGISTRY.register(_SECRETS)


def show_secrets(rows: Iterable[SecretCertificate]) -> None:
    """Replace the Secrets the next scrape reports."""
    _SECRETS.shown = tuple(rows)


def serve(port: int) -> None:
    """Serve ``/metrics`` on ``port`` (all addresses) from a daemon thread."""
    start_http_server(port)
