"""python-base.sh debootstraps from the host's own apt sources, in both of apt's formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from debian_mirror import main, source_files

ONE_LINE = """\
# deb http://commented.invalid/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://one.invalid/debian/ bookworm main contrib
deb http://one.invalid/debian-security bookworm-security main
deb-src http://src.invalid/debian bookworm main
"""

DEB822 = """\
Types: deb
# a comment inside a stanza
URIs: http://sec.invalid/debian-security
Suites: bookworm-security
Components: main

Types: deb-src deb
URIs: http://two.invalid/debian
Suites: bookworm
 bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def apt(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def mirror(capsys: pytest.CaptureFixture[str], files: list[Path]) -> tuple[int, str, str]:
    status = main([str(f) for f in files])
    out, err = capsys.readouterr()
    return status, out.strip(), err.strip()


def test_one_line_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = apt(tmp_path, {"sources.list": ONE_LINE})
    assert mirror(capsys, source_files(root)) == (0, "http://one.invalid/debian", "")


def test_deb822_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = apt(tmp_path, {"sources.list.d/debian.sources": DEB822})
    assert mirror(capsys, source_files(root)) == (0, "http://two.invalid/debian", "")


def test_disabled_and_unread_files_are_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = apt(
        tmp_path,
        {
            "sources.list.d/a.sources": DEB822.replace("Types:", "Enabled: no\nTypes:"),
            "sources.list.d/b.list.disabled": ONE_LINE,
            "sources.list.d/c.list": "deb http://three.invalid/debian trixie main\n",
        },
    )
    assert source_files(root) == [root / "sources.list.d/a.sources", root / "sources.list.d/c.list"]
    assert mirror(capsys, source_files(root)) == (0, "http://three.invalid/debian", "")


def test_no_debian_archive_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = apt(
        tmp_path, {"sources.list": "deb http://x.invalid/debian-security bookworm-security main\n"}
    )
    status, out, err = mirror(capsys, source_files(root))
    assert (status, out) == (1, "")
    assert err == (
        f"ERROR: no Debian archive in the host's apt sources ({root / 'sources.list'}): need a "
        "'deb' entry with component main for bookworm (or set DEBIAN_MIRROR)"
    )
