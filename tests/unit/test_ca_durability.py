"""Shared flushes (`mtls_ca.durability.GroupFlush`) and the index of issued certificates that
uses them: every append is on disk when it returns, with fewer flushes than appends, across a
prune that rewrites the index; a forked worker's appends wait for its parent's lock."""

from __future__ import annotations

import datetime
import fcntl
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mtls_ca.durability import GroupFlush
from mtls_ca.revocation import IssuedIndex, IssuedRecord

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)


class Disk:
    """``os.fdatasync`` that notes, per file, how many bytes were on disk after each flush."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.flushed: dict[int, int] = {}
        self.flushes = 0
        self._lock = threading.Lock()
        real = os.fdatasync

        def fdatasync(fd: int) -> None:
            size = os.fstat(fd).st_size
            real(fd)
            with self._lock:
                inode = os.fstat(fd).st_ino
                self.flushed[inode] = max(self.flushed.get(inode, 0), size)
                self.flushes += 1

        monkeypatch.setattr(os, "fdatasync", fdatasync)

    def holds(self, path: Path, line: bytes) -> bool:
        """Whether ``line`` of the file at ``path`` lies within what a flush covered."""
        data = path.read_bytes()
        end = data.index(line) + len(line)
        return self.flushed.get(path.stat().st_ino, 0) >= end


def _record(serial: int) -> IssuedRecord:
    return IssuedRecord(
        serial=serial,
        names=(f"web-{serial}.shop.svc",),
        spiffe_id="spiffe://cluster.local/ns/shop/sa/default",
        key_sha256="ab" * 32,
        issuer="cd" * 32,
        not_after=NOW + datetime.timedelta(days=1),
    )


def _line(serial: int) -> bytes:
    return f'"serial":"{serial:x}"'.encode()


def test_a_flush_begun_after_a_write_covers_it_and_later_writers_share_it(tmp_path: Path) -> None:
    flush = GroupFlush()
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for ticket in (1, 2, 3):
            os.write(fd, b"x\n")
            flush.wrote(ticket)
        flush.wait(2, fd)
        assert flush.synced == 3  # the flush covered every write made before it began
        flush.wait(3, fd)  # already durable: no flush
        assert flush.synced == 3
    finally:
        os.close(fd)


def test_after_a_switch_the_new_file_is_flushed_for_its_own_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(monkeypatch)
    flush = GroupFlush()
    old = os.open(tmp_path / "old", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    new = os.open(tmp_path / "new", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(old, b"one\n")
        flush.wrote(1)
        os.fsync(old)
        flush.switched()
        os.write(new, b"two\n")
        flush.wrote(2)
        flush.wait(1, old)  # the switch made it durable
        assert disk.flushes == 0
        flush.wait(2, new)
        assert disk.holds(tmp_path / "new", b"two\n")
    finally:
        os.close(old)
        os.close(new)


def test_every_append_to_the_index_is_on_disk_when_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(monkeypatch)
    index = IssuedIndex(tmp_path)
    durable: list[bool] = []

    def append(serial: int) -> None:
        index.append(_record(serial))
        durable.append(disk.holds(index.path, _line(serial)))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(append, range(1, 201)))
    assert len(durable) == 200 and all(durable)
    assert disk.flushes < 200  # the threads shared flushes
    assert sorted(r.serial for r in index.records(NOW)) == list(range(1, 201))


def test_an_append_after_another_process_pruned_the_index_is_flushed_in_the_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(monkeypatch)
    index = IssuedIndex(tmp_path)
    index.append(_record(1))
    index.append(_record(2))
    old = index.path.stat().st_ino
    assert IssuedIndex(tmp_path).prune(NOW) == 2  # as the upkeep of another worker does
    assert index.path.stat().st_ino != old
    index.append(_record(3))
    assert disk.holds(index.path, _line(3))
    assert [r.serial for r in index.records(NOW)] == [1, 2, 3]


def _append_at_once(index: IssuedIndex, serial: int) -> None:
    """In a forked child: append without waiting for the lock; exit 3 when it is taken."""
    flock = fcntl.flock

    def at_once(fd: int, operation: int) -> None:
        flock(fd, operation | fcntl.LOCK_NB if operation == fcntl.LOCK_EX else operation)

    fcntl.flock = at_once  # type: ignore[assignment]
    try:
        index.append(_record(serial))
    except BlockingIOError:
        os._exit(3)
    os._exit(0)


def test_a_forked_worker_takes_the_index_lock_through_a_descriptor_of_its_own(
    tmp_path: Path,
) -> None:
    index = IssuedIndex(tmp_path)
    index.append(_record(1))  # this process's lock descriptor is open now
    with index._locked():  # as this process's prune holds it
        child = multiprocessing.get_context("fork").Process(target=_append_at_once, args=(index, 2))
        child.start()
        child.join(timeout=30)
    # The inherited descriptor would share this process's lock, and the child would append.
    assert child.exitcode == 3
    assert [r.serial for r in index.records(NOW)] == [1]
