"""The chart and k8s/: lint-clean, one source of truth, and valid for the API server.

Runs in the e2e tier because it needs helm (the local cluster's cache has it; kind users have
it) and, for the schema check, the API server in ``KUBECONFIG`` (server-side dry run).
"""

from __future__ import annotations

import os
import subprocess
import sys

from kube import ROOT, kubectl

HELM = os.environ.get("HELM", "helm")
CHART = str(ROOT / "charts" / "hello-mtls")


def helm(*args: str) -> str:
    done = subprocess.run(
        [HELM, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_chart_lints_clean() -> None:
    out = helm("lint", "--strict", CHART)
    assert "0 chart(s) failed" in out


def test_k8s_is_the_chart_rendered() -> None:
    done = subprocess.run(
        [sys.executable, "charts/render_k8s.py", "--helm", HELM, "--check"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr


def test_rendered_objects_pass_the_api_servers_validation(installed: str) -> None:
    for values in ([], ["--set", "operator.watchNamespaces={default,kube-public}"]):
        rendered = helm("template", "hello-mtls", CHART, "--namespace", installed, *values)
        out = kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered, timeout=120)
        assert "deployment.apps/hello-mtls-operator" in out
    broken = helm("template", "hello-mtls", CHART, "--namespace", installed).replace(
        "replicas: 1", "replicas: one", 1
    )
    done = subprocess.run(
        ["kubectl", "apply", "--dry-run=server", "-f", "-"],
        input=broken,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0  # the dry run does validate
