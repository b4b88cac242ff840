"""The e2e harness's sharing rule (tests/support/sharing.py), on real pytest-xdist workers: stand-in
modules with the e2e conftest, timed, run as ``make e2e`` runs them.

Alone modules overlap nothing, the modules that share start after the last alone one, the two
long-running ones run on different workers at the same time, and a run without workers keeps the
same order. A module with its own install runs only in a run of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Each stand-in test appends (module, worker, start, end) to the log while it holds the CPU idle
# for a moment: overlap is what is measured, so every test must take some time.
STAND_IN = """
import json, os, time
import pytest
{mark}

@pytest.mark.parametrize("n", range({tests}))
def test_stand_in(n):
    start = time.monotonic()
    time.sleep({seconds})
    with open(os.environ["SHARING_LOG"], "a") as log:
        log.write(json.dumps([__name__, os.environ.get("PYTEST_XDIST_WORKER", "main"),
                              start, time.monotonic()]) + "\\n")
"""
MODULES = {
    # name: (mark, tests, seconds per test). Plain ``--dist loadfile`` gives the worker that holds
    # the alone lock first both long-running modules, one behind the other (the worker waiting
    # for the lock finishes nothing, so it is offered nothing).
    "test_alone_a": ('pytestmark = pytest.mark.alone("kills something")', 3, 0.2),
    "test_alone_b": ('pytestmark = pytest.mark.alone("restarts something")', 3, 0.2),
    "test_long_a": ('pytestmark = pytest.mark.long_running("minutes")', 1, 2.0),
    "test_long_b": ('pytestmark = pytest.mark.long_running("minutes")', 3, 0.8),
    "test_shares_a": ("", 2, 0.2),
    "test_shares_b": ("", 2, 0.2),
    "test_shares_c": ("", 1, 0.2),
}
OWN_INSTALL = "test_own_install"


def _tree(tmp_path: Path) -> Path:
    """A copy of the e2e harness (the real conftests, support and harness packages) with the
    stand-ins."""
    tests = tmp_path / "tests"
    (tests / "e2e").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "conftest.py", tests / "conftest.py")
    shutil.copy(ROOT / "tests" / "e2e" / "conftest.py", tests / "e2e" / "conftest.py")
    shutil.copytree(ROOT / "tests" / "support", tests / "support")
    shutil.copytree(ROOT / "hack" / "harness", tmp_path / "hack" / "harness")
    marks = ("alone(why): x", "long_running(why): x", "own_install(why): x")
    markers = "\n".join(f"    {line}" for line in marks)
    (tmp_path / "pytest.ini").write_text(f"[pytest]\npythonpath = hack\nmarkers =\n{markers}\n")
    for name, (mark, count, seconds) in MODULES.items():
        body = STAND_IN.format(mark=mark, tests=count, seconds=seconds)
        (tests / "e2e" / f"{name}.py").write_text(body)
    own = STAND_IN.format(mark='pytestmark = pytest.mark.own_install("x")', tests=1, seconds=0.1)
    (tests / "e2e" / f"{OWN_INSTALL}.py").write_text(own)
    return tmp_path


def _run(tree: Path, *options: str) -> list[tuple[str, str, float, float]]:
    log = tree / "log.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--e2e", *options],
        cwd=tree,
        env={"SHARING_LOG": str(log), "PATH": "/usr/bin:/bin", "HOME": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]


def _spans(records: list[tuple[str, str, float, float]]) -> dict[str, tuple[str, float, float]]:
    """module -> (worker, first start, last end)."""
    spans: dict[str, tuple[str, float, float]] = {}
    for module, worker, start, end in records:
        _, first, last = spans.get(module, (worker, start, end))
        spans[module] = (worker, min(first, start), max(last, end))
    return spans


@pytest.mark.parametrize("workers", ["2", "0"])
def test_alone_modules_overlap_nothing_and_long_ones_run_side_by_side(
    tmp_path: Path, workers: str
) -> None:
    tree = _tree(tmp_path)
    spans = _spans(
        _run(tree, "-n", workers, "--dist", "loadfile", "--no-loadscope-reorder", "tests/e2e")
    )
    assert set(spans) == set(MODULES)
    alone = [m for m in spans if m.startswith("test_alone")]
    last_alone_end = max(spans[m][2] for m in alone)
    for module in alone:
        _, start, end = spans[module]
        others = [spans[m] for m in spans if m != module]
        assert all(e <= start or s >= end for _, s, e in others), (module, spans)
    for module in set(spans) - set(alone):
        assert spans[module][1] >= last_alone_end, (module, spans)
    if workers == "0":
        return
    (worker_a, start_a, end_a), (worker_b, start_b, end_b) = (
        spans["test_long_a"],
        spans["test_long_b"],
    )
    assert worker_a != worker_b
    assert start_a < end_b and start_b < end_a, spans


def test_a_module_with_its_own_install_runs_only_in_a_run_of_its_own(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    own = f"tests/e2e/{OWN_INSTALL}.py"
    alone = _spans(_run(tree, "-n", "2", "--dist", "loadfile", "--no-loadscope-reorder", own))
    assert set(alone) == {OWN_INSTALL}
    (tree / "log.jsonl").unlink()
    beside = _spans(_run(tree, "-n", "0", "tests/e2e/test_shares_a.py", own))
    assert set(beside) == {"test_shares_a"}
