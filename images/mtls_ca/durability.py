"""Writes made durable: appends flushed together (one ``fdatasync`` at a time per process,
shared); a directory is synced after a rename with the library's
`mtls_context.layout.fsync_directory`.

The CA answers a signature only once its audit record and its line in the index of issued
certificates are on disk. A flush of a file takes milliseconds and covers everything written to
it before it began, so the threads of a process share them (a group commit, as databases do):
a thread whose write an earlier flush did not cover waits for that flush to end, then flushes
everything written so far for the threads behind it, instead of each queueing a flush of its own.
"""

from __future__ import annotations

import os
import threading

__all__ = ["GroupFlush"]


class GroupFlush:
    """The flushes of one process's appends to one file at a time; thread-safe.

    A writer numbers its writes in the order it makes them (``ticket``, increasing within the
    process), calls `wrote` under its own lock right after each write, and `wait` outside that
    lock. When the writes move on to another file, it calls `switched` under its lock once the
    file before is durable whole (a log segment closed with ``fsync``, an index rewritten and
    synced), since a flush of the new file would not cover the old one.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._flushing = False
        self._written = 0
        self.synced = 0
        """Every write up to this ticket is on disk."""

    def wrote(self, ticket: int) -> None:
        """Note the write ``ticket`` (made, not yet durable)."""
        with self._changed:
            self._written = max(self._written, ticket)

    def switched(self) -> None:
        """Note that every write so far is durable, and the next ones go to another file."""
        with self._changed:
            self.synced = max(self.synced, self._written)
            self._changed.notify_all()

    def wait(self, ticket: int, fd: int) -> None:
        """Return once write ``ticket`` (made through ``fd``, a descriptor of its file that the
        caller closes) is on disk.

        Raises:
            OSError: if the flush failed: the write may not be durable.
        """
        with self._changed:
            while self.synced < ticket and self._flushing:
                self._changed.wait()
            if self.synced >= ticket:
                return
            self._flushing = True
            # Every write up to here went to this file: a switch since ``ticket`` was written
            # would have made it durable, and the check above returned.
            target = self._written
        done = False
        try:
            os.fdatasync(fd)
            done = True
        finally:
            with self._changed:
                self._flushing = False
                if done:
                    self.synced = max(self.synced, target)
                self._changed.notify_all()
