"""``hello-mtls status`` compares what each pod serves (its ``/metrics``, read through a
port-forward) with what its Secret holds; a fake API, the exposition of the real collector."""

from __future__ import annotations

import base64
import datetime
import io
import json
import socket
from typing import Any

from cryptography import x509
from prometheus_client import CollectorRegistry, generate_latest

from mtls_cli import reloads
from mtls_cli.ca_status import CAReport
from mtls_cli.cli import main
from mtls_context.layout import CERT
from mtls_context.prometheus import StatusCollector
from mtls_context.status import Status
from mtls_contract.marks import ANNOTATION_SERIAL, LABEL_MANAGED
from support.api_paths import Paths, healthy_install
from support.operator_pki import PKI

UTC = datetime.UTC
NOW = datetime.datetime.now(UTC)
NAME = "web.shop.svc"


def exposition(*contexts: tuple[str, str, int]) -> str:
    """What ``--metrics-port`` serves for contexts of (side, serial, pid), from the real
    collector (plus a context of another identity, which the comparison leaves out)."""
    statuses = [
        Status("/d", side, pid, NAME, serial, NOW, 1, NOW, None, None)
        for side, serial, pid in contexts
    ]
    statuses.append(Status("/o", "client", 9, "other.shop.svc", "99", NOW, 1, NOW, None, None))
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: statuses))
    return generate_latest(registry).decode()


class Pods(Paths):
    """The API, with each pod's ``/metrics`` behind a fake port-forward."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[tuple[str, int], str] = {}
        self.forwards: list[tuple[str, str, int]] = []
        self.far_ends: list[socket.socket] = []

    def connect(self, namespace: str, pod: str, port: int) -> socket.socket:
        self.forwards.append((namespace, pod, port))
        if (pod, port) not in self.metrics:
            raise OSError(f"connection refused on {pod}:{port}")
        ours, theirs = socket.socketpair()
        body = self.metrics[(pod, port)].encode()
        head = f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        theirs.sendall(head + body)
        self.far_ends.append(theirs)  # open until the request is written, as a real peer
        return ours

    def close(self) -> None:
        for end in self.far_ends:
            end.close()


def shop() -> tuple[Pods, str]:
    """web-1 and web-2 (metrics on 9102) share web-tls (a trustme leaf: notBefore in the past)."""
    pki = PKI()
    api = Pods()
    for body in healthy_install(NOW).objects.items():
        api.put(*body)
    for name in ("web-1", "web-2"):
        annotations = {"hello-mtls.dev/name": NAME, reloads.PORT_ANNOTATION: "9102"}
        api.put(
            f"/api/v1/namespaces/shop/pods/{name}",
            {
                "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
                "status": {"phase": "Running"},
            },
        )
    data = pki.data(NAME)
    leaf = x509.load_pem_x509_certificates(data[CERT])[0]
    serial = f"{leaf.serial_number:x}"
    api.put(
        "/api/v1/namespaces/shop/secrets/web-tls",
        {
            "metadata": {
                "name": "web-tls",
                "namespace": "shop",
                "labels": {LABEL_MANAGED: "true"},
                "annotations": {ANNOTATION_SERIAL: serial},
            },
            "data": {CERT: base64.b64encode(data[CERT]).decode()},
        },
    )
    return api, serial


def status(api: Paths, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    report = CAReport({"phase": "idle"}, b"", None, None)
    code = main(["status", "-n", "shop", *args], api=lambda _: api, read=lambda *_: report, out=out)
    return code, out.getvalue()


def row(out: str) -> dict[str, Any]:
    rows = json.loads(out)["identities"]
    assert len(rows) == 1
    return dict(rows[0])


def test_every_process_serving_the_secrets_serial_is_current() -> None:
    api, serial = shop()
    api.metrics[("web-1", 9102)] = exposition(("server", serial, 10), ("server", serial, 11))
    api.metrics[("web-2", 9102)] = exposition(("server", serial, 20), ("client", serial, 21))
    _, out = status(api, "-o", "json")
    web = row(out)
    assert web["served_state"] == "current"
    assert {(s["pod"], s["side"], s["pid"]) for s in web["served"]} == {
        ("web-1", "server", "10"),
        ("web-1", "server", "11"),
        ("web-2", "server", "20"),
        ("web-2", "client", "21"),
    }
    assert ("shop", "web-1", 9102) in api.forwards and ("shop", "web-2", 9102) in api.forwards


def test_a_process_on_an_older_serial_is_stale_once_the_grace_has_passed() -> None:
    api, serial = shop()
    api.metrics[("web-1", 9102)] = exposition(("server", serial, 10))
    api.metrics[("web-2", 9102)] = exposition(("server", "0ld", 20))
    code, out = status(api, "--stale-after", "1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[-1] == "SERVED"
    assert lines[1].split()[-1] == "stale"
    assert (
        f"! shop/web-2 (pid 20, server side) still uses serial 0ld, not its Secret's {serial[:16]}:"
        " it did not reload (docs/alerts.md#hellomtlsstalecertificate)"
    ) in lines
    assert "web-1 (pid" not in out
    _, out = status(api, "-o", "json", "--stale-after", "1")
    assert row(out)["served_state"] == "stale"


def test_a_process_on_an_older_serial_within_the_grace_is_reloading() -> None:
    api, serial = shop()
    api.metrics[("web-1", 9102)] = exposition(("server", serial, 10))
    api.metrics[("web-2", 9102)] = exposition(("server", "0ld", 20))
    _, out = status(api, "-o", "json", "--stale-after", "86400")
    assert row(out)["served_state"] == "reloading"


def test_a_pod_that_cannot_be_read_is_unknown_and_says_why() -> None:
    api, serial = shop()
    api.metrics[("web-1", 9102)] = exposition(("server", serial, 10))
    code, out = status(api)
    assert code == 0
    assert out.splitlines()[1].split()[-1] == "unknown"
    assert "! shop/web-2: connection refused on web-2:9102" in out.splitlines()


def test_no_served_reads_no_pod() -> None:
    api, _ = shop()
    _, out = status(api, "-o", "json", "--no-served")
    assert row(out)["served_state"] == "" and api.forwards == []


def test_a_bad_stale_after_is_a_usage_error(capsys: Any) -> None:
    api, _ = shop()
    try:
        status(api, "--stale-after", "soon")
    except SystemExit as exit:
        assert exit.code == 2
    assert "soon is not a positive number of seconds" in capsys.readouterr().err


def test_compare_counts_the_grace_from_the_secrets_certificate() -> None:
    issued = NOW - datetime.timedelta(minutes=5)
    old = [reloads.Served("p", "server", "1", "0ld")]
    grace = datetime.timedelta(minutes=10)
    assert reloads.compare("new", issued, old, NOW, grace) == reloads.RELOADING
    later = NOW + datetime.timedelta(minutes=6)
    assert reloads.compare("new", issued, old, later, grace) == reloads.STALE
    assert reloads.compare("new", None, old, NOW, grace) == reloads.STALE
    assert reloads.compare("0ld", issued, old, later, grace) == reloads.CURRENT
