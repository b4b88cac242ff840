"""One version number: the chart's ``version`` and ``appVersion`` and the ``hello-mtls``
distribution's, semver, with its section in CHANGELOG.md (docs/upgrades.md#versions)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# https://semver.org/#is-there-a-suggested-regular-expression-regex-to-check-a-semver-string
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def chart() -> dict[str, str]:
    return yaml.safe_load((ROOT / "charts" / "hello-mtls" / "Chart.yaml").read_text())  # type: ignore[no-any-return]


def test_the_chart_and_the_distribution_carry_one_semver_version() -> None:
    version = chart()["version"]
    assert SEMVER.match(version), version
    assert chart()["appVersion"] == version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == version


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("-")[0].split("."))


def test_the_changelog_has_the_version_or_unreleased_work_toward_it() -> None:
    """The chart's version is either the newest section, or newer than every released one while
    the work toward it is under Unreleased."""
    text = (ROOT / "CHANGELOG.md").read_text()
    sections = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    released = [s for s in sections if s != "Unreleased"]
    assert all(SEMVER.match(s) for s in released), released
    assert released == sorted(released, key=_key, reverse=True)
    version = chart()["version"]
    if sections[0] == "Unreleased":
        assert f"To be {version} " in text
        assert all(_key(version) > _key(s) for s in released)
    else:
        assert sections[0] == version
