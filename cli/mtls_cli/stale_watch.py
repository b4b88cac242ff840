"""``hello-mtls-stale-watch``: a Warning Event ``StaleCertificate`` on each pod that keeps serving
an older certificate than its Secret for longer than a set time, and a metric of them (issue 25).

It runs in a pod of its own, off by default in the chart (``staleWatch.enabled``), with no right
to Secrets: what each Secret holds it reads where the operator already publishes it, the leader's
``hello_mtls_operator_secret_not_before_timestamp_seconds`` (serial and notBefore per Secret, what
the HelloMTLSStaleCertificate alert joins on) on the operator pods' metrics port; what each pod
serves, on the pod's own metrics port (``prometheus.io/port``) at its pod IP. The rule is
`mtls_cli.reloads.compare`, that of ``hello-mtls status``. Why this shape:
docs/decisions/2026-12-07-no-stale-certificate-event.md.

A round lists the pods, reads the operator, then reads at most ``reads_per_second`` pods a second;
an Event is posted once per pod and Secret serial (its name says which, so a restart posts none
twice).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import logging
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from mtls_cli import reloads
from mtls_cli.cluster import Api, ApiError, KubeApi
from mtls_contract.marks import ANNOTATION_MODE, ANNOTATION_NAME, SECRET_MODE
from mtls_operator.claims import secret_of

__all__ = [
    "REASON",
    "Held",
    "Stale",
    "StaleWatch",
    "held_by_leader",
    "main",
    "read_metrics",
]

REASON = "StaleCertificate"
COMPONENT = "hello-mtls-stale-watch"
"""The ``source.component`` of its Events."""
OPERATOR_LABEL = "app.kubernetes.io/name=hello-mtls-operator"
# What the operator exports (mtls_operator.metrics; tests/unit/test_stale_watch.py reads the
# operator's own exposition with them).
LEADER_METRIC = "hello_mtls_operator_leader"
SECRET_METRIC = "hello_mtls_operator_secret_not_before_timestamp_seconds"
_TIMEOUT = 5.0
_PAGE = "500"
_log = logging.getLogger(__name__)

STALE_PODS = Gauge(
    "hello_mtls_stale_watch_stale_pods",
    "Pods that served an older certificate than their Secret for longer than the grace, in the"
    " last round.",
)
EVENTS = Counter("hello_mtls_stale_watch_events", "StaleCertificate Events posted.")
READ_FAILED = Counter(
    "hello_mtls_stale_watch_read_failed",
    "Metrics ports that could not be read or parsed, by target: operator or pod.",
    ["target"],
)
ROUND_SECONDS = Gauge("hello_mtls_stale_watch_round_seconds", "Duration of the last round.")
LAST_ROUND = Gauge(
    "hello_mtls_stale_watch_last_round_timestamp_seconds",
    "Unix time at which the last round that read the operator's leader ended.",
)


@dataclass(frozen=True)
class Held:
    """The certificate a managed Secret holds, as the operator's leader reports it."""

    identity: str
    serial: str
    not_before: datetime.datetime


@dataclass(frozen=True)
class Stale:
    """A pod that serves an older certificate than its Secret, past the grace."""

    namespace: str
    pod: str
    uid: str
    secret: str
    held: Held
    served: tuple[reloads.Served, ...]


def held_by_leader(text: str) -> dict[tuple[str, str], Held] | None:
    """What each Secret holds by (namespace, Secret), from an operator replica's ``/metrics``;
    None unless the replica says it leads (a standby reports no Secret).

    Raises:
        ValueError: the text is not the Prometheus exposition format.
    """
    leads = False
    held = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == LEADER_METRIC:
                leads = sample.value == 1
            elif sample.name == SECRET_METRIC:
                labels = sample.labels
                held[(labels["secret_namespace"], labels["secret"])] = Held(
                    identity=labels["identity"],
                    serial=labels["serial"],
                    not_before=datetime.datetime.fromtimestamp(sample.value, datetime.UTC),
                )
    return held if leads else None


def read_metrics(address: str, port: int) -> str:
    """``GET /metrics`` on ``address:port`` (plain HTTP), at most `reloads.MAX_BYTES`.

    Raises:
        OSError: no connection, no answer in time, not 200, too long, or not HTTP.
    """
    try:
        return reloads.get_metrics(http.client.HTTPConnection(address, port, timeout=_TIMEOUT))
    except http.client.HTTPException as error:
        raise OSError(f"GET /metrics on {address}:{port}: {error!r}") from None


@dataclass
class StaleWatch:
    """The rounds, on ports: ``api`` (pods list, events create), ``fetch`` (a metrics port),
    ``clock`` (now, UTC), ``monotonic`` and ``sleep`` (the pacing)."""

    api: Api
    operator_namespace: str
    grace: datetime.timedelta
    reads_per_second: float
    namespaces: Sequence[str] = ()
    """The namespaces to read (empty: all)."""
    operator_label: str = OPERATOR_LABEL
    read_ports: frozenset[int] = frozenset()
    """The metrics ports it may read (empty: any); a pod that names another is not read."""
    fetch: Callable[[str, int], str] = read_metrics
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    posted: set[tuple[str, str]] = field(default_factory=set)
    """(pod UID, Secret serial) of each Event posted, or found posted, by this process."""
    _next_read: float = field(default=0.0, init=False)

    def round(self) -> list[Stale] | None:
        """One round: every stale pod found (an Event posted for each new one); None when no
        operator replica reported as leader (nothing is known of the Secrets then)."""
        pods = self._pods()
        held = self._held(pods)
        if held is None:
            return None
        stale = []
        for pod in pods:
            found = self._check(pod, held)
            if found is not None:
                stale.append(found)
                self._report(found)
        running = {pod["metadata"]["uid"] for pod in pods}
        self.posted = {key for key in self.posted if key[0] in running}
        _STALE.shown = tuple(stale)
        STALE_PODS.set(len(stale))
        LAST_ROUND.set(self.clock().timestamp())
        return stale

    def _pods(self) -> list[dict[str, Any]]:
        scopes = [f"/api/v1/namespaces/{n}/pods" for n in self.namespaces] or ["/api/v1/pods"]
        if self.namespaces and self.operator_namespace not in self.namespaces:
            scopes.append(f"/api/v1/namespaces/{self.operator_namespace}/pods")
        pods: list[dict[str, Any]] = []
        for scope in scopes:
            query = {"limit": _PAGE}
            while True:
                page = self.api.get(scope, **query) or {}
                pods += page.get("items") or []
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break
                query["continue"] = token
        return pods

    def _held(self, pods: list[dict[str, Any]]) -> dict[tuple[str, str], Held] | None:
        key, _, value = self.operator_label.partition("=")
        for pod in pods:
            meta = pod["metadata"]
            if meta.get("namespace") != self.operator_namespace:
                continue
            if (meta.get("labels") or {}).get(key) != value:
                continue
            address = self._address(pod)
            if address is None:
                continue
            try:
                held = held_by_leader(self.fetch(*address))
            except (OSError, ValueError) as error:
                READ_FAILED.labels("operator").inc()
                _log.warning("operator pod %s: %s", meta["name"], error)
                continue
            if held is not None:
                return held
        _log.warning(
            "no operator pod (%s in %s) reports as leader: round skipped",
            self.operator_label,
            self.operator_namespace,
        )
        return None

    def _check(self, pod: dict[str, Any], held: Mapping[tuple[str, str], Held]) -> Stale | None:
        meta = pod["metadata"]
        annotations = meta.get("annotations") or {}
        if ANNOTATION_NAME not in annotations:
            return None
        if annotations.get(ANNOTATION_MODE, SECRET_MODE).strip() != SECRET_MODE:
            return None
        address = self._address(pod)
        secret = secret_of(annotations)
        known = held.get((meta["namespace"], secret))
        if address is None or known is None:
            return None
        self._pace()
        try:
            served = reloads.parse_metrics(self.fetch(*address), meta["name"], known.identity)
        except (OSError, ValueError) as error:
            READ_FAILED.labels("pod").inc()
            _log.info("pod %s/%s: %s", meta["namespace"], meta["name"], error)
            return None
        if not served:
            return None
        state = reloads.compare(known.serial, known.not_before, served, self.clock(), self.grace)
        if state != reloads.STALE:
            return None
        return Stale(meta["namespace"], meta["name"], meta["uid"], secret, known, tuple(served))

    def _address(self, pod: Mapping[str, Any]) -> tuple[str, int] | None:
        address = _metrics_address(pod)
        if address is None or not self.read_ports or address[1] in self.read_ports:
            return address
        return None

    def _pace(self) -> None:
        """At most ``reads_per_second`` pod reads a second."""
        now = self.monotonic()
        if self._next_read > now:
            self.sleep(self._next_read - now)
            now = self._next_read
        self._next_read = now + 1 / self.reads_per_second

    def _report(self, stale: Stale) -> None:
        key = (stale.uid, stale.held.serial)
        if key in self.posted:
            return
        try:
            self.api.create(f"/api/v1/namespaces/{stale.namespace}/events", _event(stale, self))
        except ApiError as error:
            if not str(error).startswith("409 "):  # posted before, by this or an earlier run
                _log.warning("could not post %s on %s: %s", REASON, stale.pod, error)
                return
        else:
            EVENTS.inc()
            _log.warning("pod %s/%s: %s", stale.namespace, stale.pod, _message(stale, self.grace))
        self.posted.add(key)


def _message(stale: Stale, grace: datetime.timedelta) -> str:
    """What the Event says: which processes serve which serial, and what the Secret holds."""
    old = sorted(
        {
            f"{s.side} {s.serial} (pid {s.pid})"
            for s in stale.served
            if s.serial != stale.held.serial
        }
    )
    since = stale.held.not_before.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"serves {', '.join(old)} although Secret '{stale.secret}' holds {stale.held.serial}"
        f" since {since}, more than {int(grace.total_seconds())} s ago: the process did not"
        " reload (docs/alerts.md#hellomtlsstalecertificate)"
    )[:1024]


def _event(stale: Stale, watch: StaleWatch) -> dict[str, Any]:
    """The Event body; named by pod UID and Secret serial, so that it is created once."""
    now = watch.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": _event_name(stale), "namespace": stale.namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": stale.pod,
            "namespace": stale.namespace,
            "uid": stale.uid,
        },
        "type": "Warning",
        "reason": REASON,
        "message": _message(stale, watch.grace),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def _event_name(stale: Stale) -> str:
    """``<pod>.stale-<hash of UID and serial>``: one name per pod and Secret serial."""
    digest = hashlib.sha256(f"{stale.uid}/{stale.held.serial}".encode()).hexdigest()[:16]
    return f"{stale.pod[:200]}.stale-{digest}"


class _StalePods:
    """``hello_mtls_stale_watch_stale_pod``: a series per stale pod of the last round."""

    def __init__(self) -> None:
        self.shown: tuple[Stale, ...] = ()

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "hello_mtls_stale_watch_stale_pod_not_before_timestamp_seconds",
            "For each pod found stale in the last round: the notBefore of the certificate its"
            " Secret holds (serial) and it does not serve.",
            labels=["namespace", "pod", "secret", "serial"],
        )
        for stale in self.shown:
            family.add_metric(
                [stale.namespace, stale.pod, stale.secret, stale.held.serial],
                stale.held.not_before.timestamp(),
            )
        yield family


_STALE = _StalePods()
REGISTRY.register(_STALE)


def _metrics_address(pod: Mapping[str, Any]) -> tuple[str, int] | None:
    """The pod IP and ``prometheus.io/port`` of a running pod that names one."""
    meta, status = pod["metadata"], pod.get("status") or {}
    port = (meta.get("annotations") or {}).get(reloads.PORT_ANNOTATION, "")
    ip = status.get("podIP")
    if not ip or status.get("phase") != "Running" or meta.get("deletionTimestamp"):
        return None
    try:
        number = int(port)
    except ValueError:
        return None
    return (ip, number) if 0 < number < 65536 else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run rounds until stopped."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        api = KubeApi()
    except Exception as error:  # the config loaders raise several kinds
        _log.error("no in-cluster credentials or kubeconfig: %s", error)
        return 1
    if args.metrics_port:
        start_http_server(args.metrics_port)
    watch = StaleWatch(
        api=api,
        operator_namespace=args.operator_namespace,
        grace=datetime.timedelta(seconds=args.stale_after),
        reads_per_second=args.reads_per_second,
        namespaces=tuple(args.namespace),
        operator_label=args.operator_label,
        read_ports=frozenset(args.read_ports),
    )
    _log.info(
        "stale-certificate watch: a round every %g s, %g pod reads/s, stale after %g s",
        args.interval,
        args.reads_per_second,
        args.stale_after,
    )
    while True:
        started = time.monotonic()
        try:
            stale = watch.round()
        except ApiError as error:
            _log.warning("round failed: %s", error)
            stale = None
        took = time.monotonic() - started
        ROUND_SECONDS.set(took)
        if stale is not None:
            _log.info("round: %d stale pod(s) in %.1f s", len(stale), took)
        time.sleep(max(0.0, args.interval - took))


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value} is not above 0")
    return number


def _ports(value: str) -> list[int]:
    try:
        ports = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a comma-separated list of ports"
        ) from None
    if not all(0 < port < 65536 for port in ports):
        raise argparse.ArgumentTypeError(f"{value!r}: a port is outside 1-65535")
    return ports


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hello-mtls-stale-watch",
        description="Post a Warning Event StaleCertificate on each pod that serves an older"
        " certificate than its Secret for longer than --stale-after seconds.",
    )
    parser.add_argument(
        "--operator-namespace", required=True, help="the namespace of the operator's pods"
    )
    parser.add_argument(
        "--operator-label",
        default=OPERATOR_LABEL,
        help=f"the KEY=VALUE label of the operator's pods (default {OPERATOR_LABEL})",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="a namespace whose pods to read (repeatable; default: every namespace)",
    )
    parser.add_argument(
        "--stale-after",
        type=_positive,
        default=reloads.DEFAULT_GRACE.total_seconds(),
        help="seconds after the Secret's certificate's notBefore that another served serial is"
        f" stale (default {reloads.DEFAULT_GRACE.total_seconds():g})",
    )
    parser.add_argument(
        "--interval", type=_positive, default=60.0, help="seconds between rounds (default 60)"
    )
    parser.add_argument(
        "--reads-per-second",
        type=_positive,
        default=5.0,
        help="pods' metrics ports read per second at most (default 5)",
    )
    parser.add_argument(
        "--read-ports",
        type=_ports,
        default=[],
        help="comma-separated metrics ports it may read (default: any); pods naming another"
        " are not read",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9091,
        help="port of its own /metrics (default 9091; 0: none)",
    )
    return parser
