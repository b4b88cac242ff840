"""``hello-mtls-stale-watch``: a round on a fake API and fake metrics ports, fed the real
exposition of the operator (`mtls_operator.metrics`) and of the TLS library's collector; its
HTTP read against a real server on 127.0.0.1. The cluster run: tests/e2e/test_alerts.py."""

from __future__ import annotations

import datetime
import http.server
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from mtls_cli import reloads, stale_watch
from mtls_cli.cluster import ApiError
from mtls_cli.stale_watch import REASON, StaleWatch, held_by_leader, read_metrics
from mtls_context.prometheus import StatusCollector
from mtls_context.status import Status
from mtls_operator import metrics
from support.api_paths import Paths

UTC = datetime.UTC
NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
GRACE = datetime.timedelta(minutes=10)
OPERATORS = "hello-mtls"
NAME = "web.shop.svc"


def operator_exposition(leader: bool, *secrets: tuple[str, str, datetime.datetime]) -> str:
    """What an operator replica serves on its metrics port: the real module's registry, with
    ``secrets`` of (Secret, serial, notBefore) in namespace shop."""
    metrics.LEADER.set(1 if leader else 0)
    metrics.show_secrets(
        metrics.SecretCertificate("shop", secret, NAME, serial, start.timestamp(), 2e9)
        for secret, serial, start in secrets
    )
    try:
        return generate_latest(REGISTRY).decode()
    finally:
        metrics.LEADER.set(0)
        metrics.show_secrets(())


def pod_exposition(*serials: str) -> str:
    """What an app's ``--metrics-port`` serves: a server context per serial (the real collector)."""
    statuses = [
        Status("/d", "server", 10 + i, NAME, serial, NOW, 1, NOW, None, None)
        for i, serial in enumerate(serials)
    ]
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: statuses))
    return generate_latest(registry).decode()


def pod(
    namespace: str, name: str, ip: str, annotations: Mapping[str, str], **labels: str
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "annotations": dict(annotations),
            "labels": labels,
        },
        "status": {"phase": "Running", "podIP": ip},
    }


class Cluster(Paths):
    """The API (a second create of one name is a 409, as the API server answers) and the pods'
    metrics ports by (IP, port)."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: dict[tuple[str, int], str] = {}
        self.reads: list[tuple[str, int]] = []

    def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if f"{path}/{body['metadata']['name']}" in self.objects:
            raise ApiError(f"409 POST {path}: already exists")
        return super().create(path, body)

    def fetch(self, address: str, port: int) -> str:
        self.reads.append((address, port))
        if (address, port) not in self.ports:
            raise OSError(f"connection refused on {address}:{port}")
        return self.ports[(address, port)]

    def events(self) -> list[dict[str, Any]]:
        return [o for o in self.created if o.get("kind") == "Event"]


def shop(secret_issued: datetime.datetime = NOW - 2 * GRACE) -> Cluster:
    """Two operator replicas (the second leads: web-tls holds serial "new"), and pods of web-tls:
    web-1 serves "new", web-2 still "old"."""
    cluster = Cluster()
    for name, ip, leader in (("operator-a", "10.0.0.2", False), ("operator-b", "10.0.0.3", True)):
        cluster.put(
            f"/api/v1/namespaces/{OPERATORS}/pods/{name}",
            pod(
                OPERATORS,
                name,
                ip,
                {"prometheus.io/port": "9090"},
                **{"app.kubernetes.io/name": "hello-mtls-operator"},
            ),
        )
        cluster.ports[(ip, 9090)] = operator_exposition(leader, ("web-tls", "new", secret_issued))
    for name, ip, serial in (("web-1", "10.0.1.1", "new"), ("web-2", "10.0.1.2", "old")):
        annotations = {"hello-mtls.dev/name": NAME, "prometheus.io/port": "9102"}
        cluster.put(f"/api/v1/namespaces/shop/pods/{name}", pod("shop", name, ip, annotations))
        cluster.ports[(ip, 9102)] = pod_exposition(serial)
    return cluster


def watch(cluster: Cluster, **options: Any) -> StaleWatch:
    return StaleWatch(
        api=cluster,
        operator_namespace=OPERATORS,
        grace=GRACE,
        reads_per_second=1000,
        fetch=cluster.fetch,
        clock=lambda: NOW,
        **options,
    )


def test_the_leaders_exposition_says_what_each_secret_holds() -> None:
    issued = NOW - GRACE
    held = held_by_leader(operator_exposition(True, ("web-tls", "ab12", issued)))
    assert held == {("shop", "web-tls"): stale_watch.Held(NAME, "ab12", issued)}
    assert held_by_leader(operator_exposition(False, ("web-tls", "ab12", issued))) is None
    with pytest.raises(ValueError):
        held_by_leader("hello_mtls_operator_leader{ 1\n")


def test_a_pod_serving_an_older_serial_past_the_grace_gets_one_warning_event() -> None:
    cluster = shop()
    checker = watch(cluster)
    (found,) = checker.round() or []
    assert (found.pod, found.secret, found.held.serial) == ("web-2", "web-tls", "new")
    (event,) = cluster.events()
    assert event["type"] == "Warning" and event["reason"] == REASON
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web-2",
        "namespace": "shop",
        "uid": "uid-web-2",
    }
    assert "serves server old (pid 10)" in event["message"]
    assert "Secret 'web-tls' holds new" in event["message"]
    assert event["source"] == {"component": "hello-mtls-stale-watch"}

    assert checker.round() == [found]  # still stale: no second Event, not even tried
    assert len(cluster.events()) == 1
    assert stale_watch.STALE_PODS._value.get() == 1
    exposition = generate_latest(REGISTRY).decode()
    assert 'namespace="shop",pod="web-2",secret="web-tls",serial="new"' in exposition

    # The Secret is renewed again and web-2 still serves "old": an Event for the new serial.
    later = NOW - GRACE - datetime.timedelta(minutes=1)
    cluster.ports[("10.0.0.3", 9090)] = operator_exposition(True, ("web-tls", "newer", later))
    assert [s.held.serial for s in checker.round() or []] == ["newer", "newer"]
    assert [e["involvedObject"]["name"] for e in cluster.events()] == ["web-2", "web-1", "web-2"]


def test_within_the_grace_a_pod_is_reloading_and_gets_no_event() -> None:
    cluster = shop(secret_issued=NOW - GRACE / 2)
    assert watch(cluster).round() == []
    assert cluster.events() == []


def test_a_restarted_watch_posts_no_event_twice() -> None:
    cluster = shop()
    watch(cluster).round()
    again = watch(cluster)  # a new process: it remembers nothing, the Event's name does
    assert len(again.round() or []) == 1
    assert len(cluster.events()) == 1
    assert again.posted == {("uid-web-2", "new")}


def test_an_event_the_api_refuses_is_tried_again_next_round() -> None:
    cluster = shop()
    refusing = Cluster.create

    def refuse(self: Cluster, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        raise ApiError(f"403 POST {path}: forbidden")

    Cluster.create = refuse  # type: ignore[method-assign]
    try:
        checker = watch(cluster)
        checker.round()
    finally:
        Cluster.create = refusing  # type: ignore[method-assign]
    assert checker.posted == set()
    checker.round()
    assert len(cluster.events()) == 1


def test_without_a_leader_nothing_is_read_or_posted() -> None:
    cluster = shop()
    cluster.ports[("10.0.0.3", 9090)] = operator_exposition(False)
    assert watch(cluster).round() is None
    assert cluster.reads == [("10.0.0.2", 9090), ("10.0.0.3", 9090)]
    assert cluster.events() == []


def test_only_secret_mode_pods_that_name_an_allowed_port_are_read() -> None:
    cluster = shop()
    others = {
        "no-port": {"hello-mtls.dev/name": NAME},
        "not-managed": {"prometheus.io/port": "9102"},
        "pod-certificate": {
            "hello-mtls.dev/name": NAME,
            "hello-mtls.dev/mode": "pod-certificate",
            "prometheus.io/port": "9102",
        },
        "other-port": {"hello-mtls.dev/name": NAME, "prometheus.io/port": "8000"},
        "bad-port": {"hello-mtls.dev/name": NAME, "prometheus.io/port": "http"},
        "other-secret": {
            "hello-mtls.dev/name": NAME,
            "hello-mtls.dev/secret": "nobody-knows",
            "prometheus.io/port": "9102",
        },
    }
    for i, (name, marks) in enumerate(others.items()):
        cluster.put(f"/api/v1/namespaces/shop/pods/{name}", pod("shop", name, f"10.0.2.{i}", marks))
    pending = pod("shop", "pending", "10.0.3.1", {"hello-mtls.dev/name": NAME})
    pending["status"]["phase"] = "Pending"
    cluster.put("/api/v1/namespaces/shop/pods/pending", pending)
    watch(cluster, read_ports=frozenset({9090, 9102})).round()
    assert sorted(cluster.reads) == [
        ("10.0.0.2", 9090),
        ("10.0.0.3", 9090),
        ("10.0.1.1", 9102),
        ("10.0.1.2", 9102),
    ]


def test_an_unreadable_pod_is_counted_and_skipped() -> None:
    cluster = shop()
    del cluster.ports[("10.0.1.2", 9102)]
    before = stale_watch.READ_FAILED.labels("pod")._value.get()
    assert watch(cluster).round() == []
    assert stale_watch.READ_FAILED.labels("pod")._value.get() == before + 1


def test_reads_are_paced() -> None:
    cluster = shop()
    clock = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    checker = watch(cluster, monotonic=lambda: clock[0], sleep=sleep)
    checker.reads_per_second = 2
    checker.round()
    assert slept == [0.5]  # two pod reads at 2 a second (the operator's read is not paced)


def test_pods_are_listed_page_by_page_in_the_given_namespaces() -> None:
    cluster = shop()
    asked: list[tuple[str, dict[str, str]]] = []
    get = cluster.get

    def paged(path: str, **query: str) -> dict[str, Any] | None:
        asked.append((path, dict(query)))
        found = get(path) or {}
        items = found.get("items") or []
        start = int(query.get("continue", "0"))
        rest = {"continue": str(start + 1)} if start + 1 < len(items) else {}
        return {"items": items[start : start + 1], "metadata": rest}

    cluster.get = paged  # type: ignore[method-assign]
    assert len(watch(cluster, namespaces=("shop",)).round() or []) == 1
    assert asked == [
        ("/api/v1/namespaces/shop/pods", {"limit": "500"}),
        ("/api/v1/namespaces/shop/pods", {"limit": "500", "continue": "1"}),
        (f"/api/v1/namespaces/{OPERATORS}/pods", {"limit": "500"}),
        (f"/api/v1/namespaces/{OPERATORS}/pods", {"limit": "500", "continue": "1"}),
    ]


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[type[_Handler], int]]:
    handler = type("Handler", (_Handler,), {})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_read_metrics_over_http_bounded(server: tuple[type[_Handler], int]) -> None:
    handler, port = server
    handler.body = pod_exposition("ab").encode()
    assert read_metrics("127.0.0.1", port) == handler.body.decode()
    handler.body = b"x" * (reloads.MAX_BYTES + 1)
    with pytest.raises(OSError, match="more than"):
        read_metrics("127.0.0.1", port)
    handler.body, handler.status = b"", 404
    with pytest.raises(OSError, match="answered 404"):
        read_metrics("127.0.0.1", port)


@pytest.mark.parametrize(
    "argv",
    [
        ["--read-ports", "9090,x"],
        ["--read-ports", "70000"],
        ["--stale-after", "0"],
        ["--reads-per-second", "-1"],
        [],
    ],
)
def test_bad_command_lines_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        stale_watch.main(["--operator-namespace", OPERATORS, *argv] if argv else [])
    assert exit_.value.code == 2


def test_without_credentials_it_says_so_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert stale_watch.main(["--operator-namespace", OPERATORS, "--metrics-port", "0"]) == 1
    assert "no in-cluster credentials or kubeconfig" in caplog.text
