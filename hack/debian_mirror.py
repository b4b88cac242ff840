"""Print the Debian archive the host's own apt uses, for debootstrap (python-base.sh).

Reads apt's sources as apt does: ``/etc/apt/sources.list`` and ``*.list`` files (one-line
format) and ``*.sources`` files (deb822) in ``/etc/apt/sources.list.d``, comments and disabled
entries left out. The answer is the first ``deb`` entry with the ``main`` component whose suite is
``bookworm``; failing that, the first one whose suite is a release (no ``-security``,
``-updates``...). So the image is built from whatever mirror or proxy the host is set up with.
Exits 1 with a message when the host has no such entry.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

SUITE = "bookworm"
Entry = tuple[str, str, tuple[str, ...]]  # URI, suite, components


def entries(path: Path) -> Iterator[Entry]:
    """The ``deb`` entries of one sources file, in order."""
    text = path.read_text(errors="replace")
    yield from (_deb822 if path.suffix == ".sources" else _one_line)(text)


def _one_line(text: str) -> Iterator[Entry]:
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] != ["deb"]:
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            yield words[0], words[1], tuple(words[2:])


def _deb822(text: str) -> Iterator[Entry]:
    for stanza in _stanzas(text):
        if "deb" not in stanza.get("types", "").split():
            continue
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        for uri in stanza.get("uris", "").split():
            for suite in stanza.get("suites", "").split():
                yield uri, suite, tuple(stanza.get("components", "").split())


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    key = ""
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif line[0] in " \t" and key:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()


def choose(all_entries: Iterable[Entry]) -> str | None:
    """The mirror to debootstrap ``bookworm`` from, or None."""
    main = [(uri, suite) for uri, suite, components in all_entries if "main" in components]
    for wanted in (lambda s: s == SUITE, lambda s: "-" not in s and "/" not in s):
        for uri, suite in main:
            if wanted(suite):
                return uri.rstrip("/")
    return None


def source_files(apt: Path = Path("/etc/apt")) -> list[Path]:
    """apt's sources files, in the order apt reads them."""
    d = apt / "sources.list.d"
    parts = (
        sorted(p for p in d.glob("*") if p.suffix in (".list", ".sources")) if d.is_dir() else []
    )
    main = apt / "sources.list"
    return ([main] if main.is_file() else []) + parts


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or source_files()
    mirror = choose(e for f in files for e in entries(f))
    if mirror is None:
        shown = ", ".join(map(str, files)) or "no sources files in /etc/apt"
        print(
            f"ERROR: no Debian archive in the host's apt sources ({shown}): need a 'deb' entry "
            f"with component main for {SUITE} (or set DEBIAN_MIRROR)",
            file=sys.stderr,
        )
        return 1
    print(mirror)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
