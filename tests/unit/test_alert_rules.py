"""The chart's alert rules (charts/hello-mtls/files/alerts.yaml) under ``promtool test rules``.

promtool is Debian's ``prometheus`` package (``make host-tools`` installs it; CI does that
itself). Without it this test fails: a rule file nobody evaluated is not tested.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from support.prometheus import binary

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "hello-mtls" / "files" / "alerts.yaml"
CASES = Path(__file__).resolve().parent / "alerts" / "alerts_test.yaml"
RUNBOOK = ROOT / "docs" / "alerts.md"


def promtool() -> str:
    return binary("promtool")


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_rules_are_valid() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_when_it_should_and_not_otherwise() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", CASES.name],
        cwd=CASES.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing() -> None:
    fired = {
        case["alertname"]
        for test in yaml.safe_load(CASES.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == {rule["alert"] for rule in alerts()}


def test_every_alert_links_its_runbook_section() -> None:
    headings = set(re.findall(r"^### (\w+)$", RUNBOOK.read_text(), re.MULTILINE))
    for rule in alerts():
        name = str(rule["alert"])
        assert name in headings, f"docs/alerts.md has no section '### {name}'"
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["runbook_url"] == f"docs/alerts.md#{name.lower()}"


def test_the_rules_and_the_dashboard_read_only_metrics_that_exist() -> None:
    exporters = (
        ROOT / "images" / "mtls_ca" / "metrics.py",
        ROOT / "operator" / "mtls_operator" / "metrics.py",
        ROOT / "library" / "src" / "mtls_context" / "prometheus.py",
    )
    defined = "".join(path.read_text() for path in exporters)
    dashboard = ROOT / "charts" / "hello-mtls" / "files" / "dashboard.json"
    for source in (RULES, dashboard):
        for name in set(re.findall(r"hello_mtls_\w+", source.read_text())):
            family = re.sub(r"_(total|bucket|count|sum)$", "", name)
            assert f'"{family}"' in defined, f"{source.name}: {name} is exported by nothing"


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """promtool checks PromQL in rule files only: each panel's query becomes a recording rule."""
    dashboard = json.loads(
        (ROOT / "charts" / "hello-mtls" / "files" / "dashboard.json").read_text()
    )
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert len(queries) > 10
    rules = [{"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
