"""Prometheus metrics of what each reloading context serves or presents (needs prometheus-client).

::

    serve(9102)                                           # this process's contexts
    serve(9102, source=lambda: read_statuses(status_dir))  # those of its worker processes

Every series carries ``side`` (server or client), ``identity`` (the certificate's first DNS
name, else its SPIFFE ID), ``serial`` (lowercase hex) and ``pid``; docs/alerts.md says what
each metric means and which alert reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from mtls_context.status import Status, statuses

__all__ = ["StatusCollector", "serve"]

_LABELS = ["side", "identity", "serial", "pid"]


class StatusCollector:
    """A prometheus-client collector that reads the statuses from ``source`` at each scrape."""

    def __init__(self, source: Callable[[], Iterable[Status]] = statuses) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        not_after = GaugeMetricFamily(
            "hello_mtls_tls_certificate_not_after_timestamp_seconds",
            "Unix time at which the certificate new connections get expires.",
            labels=_LABELS,
        )
        generation = GaugeMetricFamily(
            "hello_mtls_tls_generation",
            "Contexts built since start: 1 at start, one more per reload or max-age rebuild.",
            labels=_LABELS,
        )
        loaded = GaugeMetricFamily(
            "hello_mtls_tls_loaded_timestamp_seconds",
            "Unix time at which the context in use was built (the last reload).",
            labels=_LABELS,
        )
        error = GaugeMetricFamily(
            "hello_mtls_tls_reload_error",
            "1 while the newest files on disk are refused (the last good context stays), else 0.",
            labels=_LABELS,
        )
        crl_stale = GaugeMetricFamily(
            "hello_mtls_tls_crl_stale",
            "1 while the directory's ca.crl is present but not enforced (stale, late or "
            "partial: peers are not checked for revocation), else 0.",
            labels=_LABELS,
        )
        crl_enforced = GaugeMetricFamily(
            "hello_mtls_tls_crl_enforced",
            "1 while peers are checked against the directory's ca.crl, else 0.",
            labels=_LABELS,
        )
        for status in self._source():
            labels = [status.side, status.identity, status.serial, str(status.pid)]
            not_after.add_metric(labels, status.not_after.timestamp())
            generation.add_metric(labels, status.generation)
            loaded.add_metric(labels, status.loaded_at.timestamp())
            error.add_metric(labels, 0 if status.error is None else 1)
            crl_stale.add_metric(labels, 0 if status.crl_stale is None else 1)
            crl_enforced.add_metric(labels, 1 if status.crl_enforced else 0)
        yield from (not_after, generation, loaded, error, crl_stale, crl_enforced)


def serve(
    port: int,
    *,
    addr: str = "0.0.0.0",
    source: Callable[[], Iterable[Status]] = statuses,
) -> None:
    """Serve ``/metrics`` with these metrics on ``addr``:``port`` from a daemon thread.

    Raises:
        OSError: if the port cannot be bound.
    """
    registry = CollectorRegistry()
    registry.register(StatusCollector(source))
    start_http_server(port, addr=addr, registry=registry)
