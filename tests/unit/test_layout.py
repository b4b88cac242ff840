import os
import threading
from pathlib import Path

import pytest

from mtls_context.layout import CERT, DATA_LINK, KEY, read_version, write_version


def test_write_version_looks_like_a_kubelet_secret_volume(tmp_path: Path) -> None:
    write_version(tmp_path, {CERT: b"cert-1", KEY: b"key-1"})

    assert (tmp_path / DATA_LINK).is_symlink()
    assert os.readlink(tmp_path / CERT) == f"{DATA_LINK}/{CERT}"
    assert (tmp_path / CERT).read_bytes() == b"cert-1"
    assert (tmp_path / KEY).stat().st_mode & 0o777 == 0o600


def test_new_version_replaces_old_and_prunes_all_but_the_previous(tmp_path: Path) -> None:
    for i in range(5):
        write_version(tmp_path, {CERT: f"cert-{i}".encode()})

    assert read_version(tmp_path) == {CERT: b"cert-4"}
    versions = [p for p in tmp_path.iterdir() if p.name.startswith("..") and p.is_dir()]
    assert len([v for v in versions if not v.is_symlink()]) == 2


def test_read_version_of_a_plain_directory(tmp_path: Path) -> None:
    (tmp_path / CERT).write_bytes(b"plain")

    assert read_version(tmp_path) == {CERT: b"plain"}


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "a/b"])
def test_write_version_rejects_names_that_are_not_plain(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="is not a plain name"):
        write_version(tmp_path, {name: b"x"})


def test_reader_never_sees_files_from_two_versions(tmp_path: Path) -> None:
    write_version(tmp_path, {CERT: b"0", KEY: b"0"})
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            write_version(tmp_path, {CERT: str(i).encode(), KEY: str(i).encode()})

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        mixed = 0
        for _ in range(2000):
            files = read_version(tmp_path, (CERT, KEY))
            if files.get(CERT) != files.get(KEY):
                mixed += 1
    finally:
        stop.set()
        thread.join()
    assert mixed == 0
