"""The hash-pinned locks: what each is made from, how `make lock` makes them, how lint checks them.

Every lock in this folder is made by pip-compile from ``pyproject.toml`` and never edited by hand:

- ``ca.txt``, ``server.txt``, ``client.txt``: what each image installs (its extras);
- ``build.txt``: the build backend the images and ``make venv`` build the project with
  (``[build-system] requires``);
- ``dev.txt``: what ``make venv`` installs (the ``dev`` extra, which names every other extra, and
  the build backend). It is made first, and every other lock is made under it as a constraint, so
  a package the tests use and an image ships is the same version in both.

Each lock starts with the requirements it was made from. ``check`` (run by ``make lint``) fails
when those are no longer what ``pyproject.toml`` says, when a pin does not satisfy them, or when a
pin has no hash.

Usage: ``python requirements/locks.py lock [--keep]`` (``make lock``; ``--keep`` keeps every pin
that still satisfies, for adding one dependency), ``python requirements/locks.py check``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parent
PYPROJECT = HERE.parent / "pyproject.toml"
PROJECT = "hello-mtls"
BUILD = "[build-system] requires"
HEADER = "# Made by `make lock` (requirements/locks.py) from pyproject.toml; do not edit.\n"
INPUT = "# input: "
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", re.MULTILINE)


@dataclass(frozen=True)
class Lock:
    """One lock file: the pyproject parts it is made from and the locks that constrain it."""

    name: str
    parts: tuple[str, ...]
    constraints: tuple[str, ...] = ()


LOCKS = (
    Lock("dev.txt", ("dev", BUILD)),
    Lock("ca.txt", ("ca", "operator"), ("dev.txt",)),
    Lock("server.txt", ("server",), ("dev.txt",)),
    Lock("client.txt", ("client",), ("dev.txt",)),
    Lock("build.txt", (BUILD,), ("dev.txt",)),
)


def inputs(lock: Lock, pyproject: dict[str, object] | None = None) -> list[str]:
    """The requirements ``lock`` is made from, sorted; the project's own extras expanded."""
    data = pyproject if pyproject is not None else tomllib.loads(PYPROJECT.read_text())
    extras: dict[str, list[str]] = data["project"]["optional-dependencies"]  # type: ignore[index]
    build: list[str] = data["build-system"]["requires"]  # type: ignore[index]
    found: set[str] = set()
    pending = list(lock.parts)
    seen: set[str] = set()
    while pending:
        part = pending.pop()
        if part in seen:
            continue
        seen.add(part)
        for line in build if part == BUILD else extras[part]:
            requirement = Requirement(line)
            if _normal(requirement.name) == PROJECT:
                pending.extend(sorted(requirement.extras))
            else:
                found.add(line)
    return sorted(found, key=lambda line: (line.lower(), line))


def pins(text: str) -> dict[str, str]:
    """Package name (normalised) -> pinned version, for every pin in a lock's text."""
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


def recorded_inputs(text: str) -> list[str]:
    """The requirements a lock says it was made from (its ``# input:`` lines)."""
    return [line[len(INPUT) :] for line in text.splitlines() if line.startswith(INPUT)]


def problems(lock: Lock, text: str, wanted: list[str]) -> list[str]:
    """Why ``text`` is not a lock of ``wanted``: each reason a line, none when it is."""
    found = []
    recorded = recorded_inputs(text)
    if recorded != wanted:
        added = sorted(set(wanted) - set(recorded))
        gone = sorted(set(recorded) - set(wanted))
        found.append(f"{lock.name}: made from other requirements (new: {added}, gone: {gone})")
    found += [f"{lock.name}: {line}" for line in unmet(wanted, pins(text))]
    blocks = text.split("==")[1:]
    if not blocks or not all("--hash=sha256:" in block for block in blocks):
        found.append(f"{lock.name}: a pin without a hash")
    return found


def check() -> int:
    """Print every problem of every lock; 0 when there is none."""
    found = []
    for lock in LOCKS:
        path = HERE / lock.name
        if not path.exists():
            found.append(f"{lock.name}: missing")
            continue
        found += problems(lock, path.read_text(), inputs(lock))
    for line in found:
        print(f"ERROR: {line}", file=sys.stderr)
    if found:
        print("the locks do not match pyproject.toml: run `make lock`", file=sys.stderr)
        return 1
    print(f"==> {len(LOCKS)} locks match pyproject.toml ({', '.join(x.name for x in LOCKS)})")
    return 0


def lock_all(keep: bool) -> None:
    """Make every lock with pip-compile, in order (dev.txt, which constrains the others, first)."""
    pip_compile = Path(sys.executable).with_name("pip-compile")
    for lock in LOCKS:
        wanted = inputs(lock)
        print(f"==> {lock.name} from {', '.join(lock.parts)}", flush=True)
        command = [
            str(pip_compile),
            "--quiet",
            "--generate-hashes",
            "--allow-unsafe",
            "--strip-extras",
            "--no-header",
            "--no-emit-index-url",
            "--no-emit-find-links",
            "--output-file",
            lock.name,
            *(arg for name in lock.constraints for arg in ("--constraint", name)),
            *([] if keep else ["--upgrade"]),
            "-",
        ]
        subprocess.run(command, input="\n".join(wanted) + "\n", text=True, cwd=HERE, check=True)
        path = HERE / lock.name
        body = path.read_text().replace("-r -\n", f"{_source(lock)}\n")
        path.write_text(HEADER + "".join(f"{INPUT}{line}\n" for line in wanted) + "\n" + body)


def _source(lock: Lock) -> str:
    return " + ".join(f"hello-mtls[{part}]" if part != BUILD else part for part in lock.parts)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("lock", help="make every lock (newest releases unless --keep)")
    make.add_argument("--keep", action="store_true", help="keep pins that still satisfy")
    sub.add_parser("check", help="check every lock against pyproject.toml")
    args = parser.parse_args(argv)
    if args.command == "lock":
        lock_all(args.keep)
        return check()
    return check()


if __name__ == "__main__":
    sys.exit(main())
