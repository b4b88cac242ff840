"""The images install from hash-pinned locks: each lock must satisfy its pyproject extras."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {"ca.txt": ["ca", "operator"], "server.txt": ["server"], "client.txt": ["client"]}
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", re.MULTILINE)


def pins(text: str) -> dict[str, str]:
    return {_normal(name): version for name, version in _PIN.findall(text)}


def unmet(requirements: list[str], pinned: dict[str, str]) -> list[str]:
    """Requirements the pins do not satisfy (missing, or a version outside the specifier)."""
    problems = []
    for line in requirements:
        req = Requirement(line)
        version = pinned.get(_normal(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            problems.append(f"{line} (pinned: {version})")
    return problems


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_lock_pins_its_extras_with_hashes(lock: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    text = (ROOT / "requirements" / lock).read_text()
    wanted = [r for extra in LOCKS[lock] for r in extras[extra]]
    assert unmet(wanted, pins(text)) == [], "run `make lock`"
    assert all("--hash=sha256:" in pinned for pinned in text.split("==")[1:])


def test_the_check_catches_a_missing_or_outdated_pin() -> None:
    assert unmet(["kopf>=1.37", "requests>=2.32"], {"kopf": "1.36.0"}) == [
        "kopf>=1.37 (pinned: 1.36.0)",
        "requests>=2.32 (pinned: None)",
    ]
    assert unmet(["prometheus_client>=0.20"], {"prometheus-client": "0.26.0"}) == []
