"""A real Prometheus (Debian's ``prometheus`` package) as a host process on 127.0.0.1: it scrapes
the targets a test gives it and evaluates the chart's alert rules."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from harness.processes import free_port, running
from harness.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "charts" / "hello-mtls" / "files" / "alerts.yaml"


def binary(name: str) -> str:
    """``prometheus`` or ``promtool`` from PATH; fails the test (never skips) without it."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not on PATH: install Debian's prometheus package "
            "(`make host-tools`, or apt-get install -y prometheus)"
        )
    return found


class Prometheus:
    """The HTTP API of a running Prometheus."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._http = requests.Session()
        self._http.trust_env = False  # loopback only: no proxy from the environment

    def get(self, path: str, **params: str) -> Any:
        answer = self._http.get(f"{self.url}{path}", params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's series: ``[{"metric": {labels}, "value": [time, "value"]}]``."""
        return list(self.get("/api/v1/query", query=expr)["result"])

    def alerting_rules(self) -> list[dict[str, Any]]:
        return [
            rule
            for group in self.get("/api/v1/rules")["groups"]
            for rule in group["rules"]
            if rule["type"] == "alerting"
        ]


@contextlib.contextmanager
def prometheus(
    work: Path, scrape_configs: Sequence[dict[str, Any]], rule_files: Sequence[Path] = (ALERTS,)
) -> Iterator[Prometheus]:
    """Run Prometheus scraping and evaluating every second; yields once it is ready."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": list(scrape_configs),
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary("prometheus"),
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with running(argv, work / "prometheus.log") as process:
        api = Prometheus(port)

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError((work / "prometheus.log").read_text()[-2000:])
            return api._http.get(f"{api.url}/-/ready", timeout=2).status_code == 200

        wait_until("Prometheus to be ready", ready, 60, 0.2, (requests.ConnectionError,))
        yield api
