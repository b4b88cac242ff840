"""A real Prometheus (Debian's package, a host process) scrapes the real CA service and a real
example server with two workers, and evaluates the chart's alert rules on what it scraped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import ca_cli
from harness.ca_service import Service
from harness.processes import free_port, hello_server
from harness.waiting import wait_until
from mtls_context import layout
from support.prometheus import ALERTS, prometheus


def test_prometheus_sees_each_worker_reload_and_evaluates_every_rule(
    pki: Path, ca_service: Service, ca_state: Path, tmp_path: Path
) -> None:
    server_dir = tmp_path / "server"
    first = ca_cli.issue(ca_state, server_dir, "localhost")
    metrics = free_port()
    jobs: list[dict[str, Any]] = [
        {"job_name": "hello-server", "static_configs": [{"targets": [f"127.0.0.1:{metrics}"]}]},
        {  # as docs/alerts.md says: HTTPS on the read-only port, trusting the CA's root
            "job_name": "hello-mtls-ca",
            "scheme": "https",
            "tls_config": {"ca_file": str(pki / "prov" / layout.CA)},
            "static_configs": [{"targets": [f"127.0.0.1:{ca_service.port}"]}],
        },
    ]
    with (
        hello_server(server_dir, tmp_path / "server.log", f"--metrics-port={metrics}", workers=2),
        prometheus(tmp_path / "prometheus", jobs) as api,
    ):

        def workers_at(serial: str, generation: int) -> bool:
            found = api.query('hello_mtls_tls_generation{job="hello-server",side="server"}')
            return len(found) == 2 and all(
                s["metric"]["serial"] == serial and s["value"][1] == str(generation) for s in found
            )

        wait_until("Prometheus to scrape both workers", lambda: workers_at(first, 1), 60, 0.5)
        second = ca_cli.issue(ca_state, server_dir, "localhost")
        wait_until("both workers' reload in Prometheus", lambda: workers_at(second, 2), 60, 0.5)

        signing = api.query('hello_mtls_ca_cert_expiry_seconds{job="hello-mtls-ca",signing="true"}')
        assert {s["metric"]["kind"] for s in signing} == {"root", "intermediate"}

        def evaluated() -> list[dict[str, Any]] | None:
            rules = api.alerting_rules()
            return rules if all(r["lastEvaluation"][:4] != "0001" for r in rules) else None

        rules = wait_until("every rule to be evaluated", evaluated, 60, 0.5)
        assert len(rules) == ALERTS.read_text().count("- alert: ")
        assert [(r["name"], r["health"], r.get("lastError", "")) for r in rules] == [
            (r["name"], "ok", "") for r in rules
        ]

        # No operator runs here: only the missing leader is pending, nothing else fires. Polled:
        # the scrape timeout is the 1 s interval, and one scrape of the CA missed on a loaded
        # machine leaves HelloMTLSCADown pending until the next one answers.
        def only_no_leader() -> set[str] | None:
            rules = api.alerting_rules()
            active = {alert["labels"]["alertname"] for r in rules for alert in r["alerts"]}
            if active != {"HelloMTLSOperatorNoLeader"}:
                raise RuntimeError(f"active alerts: {sorted(active)}")  # shown when the wait ends
            return active

        wait_until("HelloMTLSOperatorNoLeader to be the only active alert", only_no_leader, 60, 0.5)
