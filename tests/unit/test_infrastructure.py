"""Infrastructure is not tests: the cluster scripts live in ``hack/``, and what the benchmarks share
with the test tiers lives in ``hack/harness``, which neither imports ``tests/support``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_packages(source: Path) -> set[str]:
    """The top-level names of every module ``source`` imports (absolute imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.partition(".")[0])
    return names


def test_benchmarks_and_the_harness_import_nothing_from_the_tests() -> None:
    sources = sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "hack").rglob("*.py"))
    assert len(sources) > 6
    offenders = [
        str(source.relative_to(ROOT))
        for source in sources
        if _imported_packages(source) & {"support", "tests", "conftest"}
    ]
    assert offenders == []


def test_the_tests_hold_no_cluster_scripts() -> None:
    assert sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.sh")) == []
