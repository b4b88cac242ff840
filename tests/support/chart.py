"""The chart rendered by the real ``helm template``, for fast tests of its branches.

The helm is the one ``HELM`` names, else the pinned one of the local cluster's cache
(``hack/build.sh helm``, which ``make host-tools`` runs when there is none), else the
one on PATH; without any the test fails (never skips): a chart branch nobody rendered is not
tested.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "hello-mtls"
NAMESPACE = "hello-mtls"
RELEASE = "hello-mtls"


def helm() -> str:
    """The helm binary to render with (see the module docstring)."""
    named = os.environ.get("HELM")
    pinned = subprocess.run(
        ["bash", "-c", "source hack/versions.sh && echo $HELM_BIN/helm"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    for candidate in (named and shutil.which(named), pinned, shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no helm: `make host-tools` builds the pinned one (hack/build.sh helm)")


@dataclass(frozen=True)
class Rendered:
    """The objects one ``helm template`` wrote, with what each was rendered from."""

    objects: list[dict[str, Any]]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object of this kind and name, or None when the chart did not render it."""
        return next(
            (o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name),
            None,
        )

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """The object of this kind and name; fails the test when it was not rendered."""
        found = self.find(kind, name)
        assert found is not None, f"the chart rendered no {kind} {name}: {self.names()}"
        return found

    def names(self) -> list[str]:
        """``Kind/name`` of every object, in the order helm wrote them."""
        return [f"{o['kind']}/{o['metadata']['name']}" for o in self.objects]

    def container(self, deployment: str, name: str) -> dict[str, Any]:
        """A container of a Deployment's pod template."""
        spec = self.get("Deployment", deployment)["spec"]["template"]["spec"]
        return next(c for c in spec["containers"] if c["name"] == name)

    def env(self, deployment: str, container: str) -> dict[str, str]:
        """The literal environment variables of a Deployment's container."""
        return {
            e["name"]: e["value"]
            for e in self.container(deployment, container)["env"]
            if "value" in e
        }


def run_helm_template(
    *values: str,
    json_values: Mapping[str, object] | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart as ``release`` in ``namespace`` with ``--set``-style
    ``values`` and ``--set-json`` ones."""
    sets = [arg for value in values for arg in ("--set", value)]
    for key, value in (json_values or {}).items():
        sets += ["--set-json", f"{key}={json.dumps(value)}"]
    return subprocess.run(
        [helm(), "template", release, str(CHART), "--namespace", namespace, *sets],
        capture_output=True,
        text=True,
        timeout=60,
    )


def render(*values: str, release: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
    """The chart rendered with ``values`` (``key=value``, as ``--set`` takes them) as
    ``release`` in ``namespace``."""
    result = run_helm_template(*values, release=release, namespace=namespace)
    assert result.returncode == 0, result.stderr
    return Rendered([o for o in yaml.safe_load_all(result.stdout) if o])
