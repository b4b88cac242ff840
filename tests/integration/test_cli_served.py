"""``hello-mtls status`` on real example servers: the one that reloads its renewed certificate
is current, the one whose reload is held back (a check interval of an hour) is stale.

The API server is the fake of the unit tests (its port-forward connects to the servers'
metrics ports on 127.0.0.1); tests/e2e/test_alerts.py runs the same on the cluster.
"""

from __future__ import annotations

import base64
import io
import json
import socket
from pathlib import Path
from typing import Any

from harness import ca_cli
from harness.processes import free_port, hello_server
from harness.waiting import wait_until
from mtls_cli.ca_status import CAReport
from mtls_cli.cli import main
from mtls_cli.reloads import PORT_ANNOTATION
from mtls_context.layout import CERT
from mtls_contract.marks import ANNOTATION_SERIAL, LABEL_MANAGED
from support.api_paths import Paths


class Loopback(Paths):
    """Pods whose port-forward is a TCP connection to a port on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: dict[str, int] = {}

    def connect(self, namespace: str, pod: str, port: int) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.ports[pod]), timeout=5)


def put_identity(api: Loopback, pod: str, metrics: int, cert_dir: Path) -> None:
    """Pod ``pod`` of identity ``localhost`` in namespace ``shop``, with its own Secret holding
    what ``cert_dir`` holds (as the kubelet would have written it)."""
    annotations = {
        "hello-mtls.dev/name": "localhost",
        "hello-mtls.dev/secret": f"{pod}-tls",
        PORT_ANNOTATION: "9102",
    }
    api.put(
        f"/api/v1/namespaces/shop/pods/{pod}",
        {
            "metadata": {"name": pod, "namespace": "shop", "annotations": annotations},
            "status": {"phase": "Running"},
        },
    )
    api.ports[pod] = metrics
    put_secret(api, pod, cert_dir)


def put_secret(api: Loopback, pod: str, cert_dir: Path) -> None:
    api.put(
        f"/api/v1/namespaces/shop/secrets/{pod}-tls",
        {
            "metadata": {
                "name": f"{pod}-tls",
                "namespace": "shop",
                "labels": {LABEL_MANAGED: "true"},
                "annotations": {ANNOTATION_SERIAL: ca_cli.serial(cert_dir)},
            },
            "data": {CERT: base64.b64encode((cert_dir / CERT).read_bytes()).decode()},
        },
    )


def served(api: Loopback, *args: str) -> dict[str, dict[str, Any]]:
    out = io.StringIO()
    report = CAReport({"phase": "idle"}, b"", None, None)
    args = ("status", "-n", "shop", "-o", "json", *args)
    assert main(args, api=lambda _: api, read=lambda *_: report, out=out) == 0
    return {row["secret"]: row for row in json.loads(out.getvalue())["identities"]}


def test_status_tells_the_server_that_reloaded_from_the_one_that_did_not(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    ca_cli.init(state)
    fresh_dir, held_dir = tmp_path / "fresh", tmp_path / "held"
    ca_cli.issue(state, fresh_dir, "localhost")
    ca_cli.issue(state, held_dir, "localhost")
    api = Loopback()
    fresh_metrics, held_metrics = free_port(), free_port()
    put_identity(api, "fresh", fresh_metrics, fresh_dir)
    put_identity(api, "held", held_metrics, held_dir)
    with (
        hello_server(fresh_dir, tmp_path / "fresh.log", f"--metrics-port={fresh_metrics}"),
        hello_server(
            held_dir, tmp_path / "held.log", f"--metrics-port={held_metrics}", check_interval=3600
        ),
    ):
        rows = served(api)
        assert {s: r["served_state"] for s, r in rows.items()} == {
            "fresh-tls": "current",
            "held-tls": "current",
        }
        assert [p["serial"] for p in rows["held-tls"]["served"]] == [ca_cli.serial(held_dir)]

        old = ca_cli.serial(held_dir)
        ca_cli.issue(state, fresh_dir, "localhost")  # the operator renews both Secrets and
        ca_cli.issue(state, held_dir, "localhost")  # the kubelet writes the new files
        put_secret(api, "fresh", fresh_dir)
        put_secret(api, "held", held_dir)

        def reloaded() -> dict[str, dict[str, Any]] | None:
            rows = served(api, "--stale-after", "1")
            return rows if rows["fresh-tls"]["served_state"] == "current" else None

        rows = wait_until("the fresh server to serve its new certificate", reloaded, 30, 0.2)
        assert rows["held-tls"]["served_state"] == "stale"
        assert [p["serial"] for p in rows["held-tls"]["served"]] == [old]
        # Within the grace (the default ten minutes) the same is a reload under way.
        assert served(api)["held-tls"]["served_state"] == "reloading"
