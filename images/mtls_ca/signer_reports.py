"""A signer pod's reports of what it signs, for the root holder's index of issued certificates.

``revoke --serial/--identity/--namespace`` finds certificates in the root holder's index
(`mtls_ca.revocation.IssuedIndex`). A signer's ``POST /sign`` hands the record of each
certificate to `IssuedReports.append`, which only queues it in memory; a thread of each worker
sends what is queued every `INTERVAL` seconds, in batches of at most `BATCH_BYTES` of JSON, to
the root holder's ``POST /issued`` (`mtls_ca.signer_material.RootHolder.report`, with the
signer's token, as for the material), which writes them into the index. So signing never waits
for the root holder, and a certificate is in the index about a second after it was answered.

While the root holder is away the records wait, at most `CAPACITY` per worker process (about
400 bytes each); when that is full the oldest one waiting is dropped, counted in
``hello_mtls_ca_index_reports_dropped_total{reason="queue_full"}`` and logged once per outage.
On a graceful exit (SIGTERM) a worker makes one last delivery and logs what it could not
deliver (``reason="exit"``); a worker or pod that is killed loses its queue without a word.
Such a certificate is revoked with its PEM (``revoke --cert``); the signer's audit trail (its
stdout) names it.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Sequence

from . import metrics
from .revocation import IssuedRecord
from .signer_material import ReportRefused

__all__ = ["BATCH_BYTES", "CAPACITY", "INTERVAL", "IssuedReports"]

INTERVAL = 1.0
"""Seconds between a worker's deliveries."""
CAPACITY = 10_000
"""Records a worker keeps for the root holder while it is away (about 4 MB)."""
BATCH_BYTES = 48 * 1024
"""The most JSON one ``POST /issued`` carries (the API takes 64 KiB; a record is at most about
6 KiB: 20 names of 253 characters)."""

_log = logging.getLogger("mtls_ca")


class IssuedReports:
    """The queue of one worker's records on their way to the root holder; thread-safe.

    Args:
        deliver: sends one batch (`RootHolder.report`): raises `OSError` when it should be
            tried again, `ReportRefused` when it never will be taken.
        capacity: the most records waiting; beyond, the oldest not being sent is dropped.
        batch_bytes: the most JSON one batch carries (one record at least).
    """

    def __init__(
        self,
        deliver: Callable[[Sequence[IssuedRecord]], None],
        *,
        capacity: int = CAPACITY,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self._deliver = deliver
        self.capacity = capacity
        self.batch_bytes = batch_bytes
        self._lock = threading.Lock()  # the queue and the batch being sent
        self._sending = threading.Lock()  # one delivery at a time
        self._queue: collections.deque[IssuedRecord] = collections.deque()
        self._batch: list[IssuedRecord] = []
        self._failing = False
        self._dropped = 0  # since the last complete delivery

    @property
    def pending(self) -> int:
        """Records not delivered yet (the batch being sent included)."""
        with self._lock:
            return len(self._queue) + len(self._batch)

    def append(self, record: IssuedRecord) -> None:
        """Queue ``record``; never waits for the root holder."""
        with self._lock:
            if len(self._queue) + len(self._batch) >= self.capacity:
                # The batch being sent is older still, but it may arrive.
                lost = self._queue.popleft() if self._queue else record
                self._dropped += 1
                if self._dropped == 1:
                    _log.warning(
                        "%d records of issued certificates wait for the root holder's index: "
                        "dropping the oldest from now on (serial %x first); revoke such a "
                        "certificate with revoke --cert",
                        self.capacity,
                        lost.serial,
                    )
                metrics.INDEX_REPORTS_DROPPED.labels(reason="queue_full").inc()
                if lost is record:
                    return
            self._queue.append(record)
            metrics.INDEX_REPORTS_PENDING.set(len(self._queue) + len(self._batch))

    def deliver(self) -> int:
        """Send what is queued, batch after batch, until a batch is not full (what comes
        meanwhile waits for the next round, so that a busy signer sends full batches) or the
        root holder does not take one; returns how many records are left."""
        with self._sending:
            full = True
            while full:
                with self._lock:
                    if not self._queue:
                        break
                    self._batch = self._take()
                    batch = self._batch
                    full = bool(self._queue)
                try:
                    self._deliver(batch)
                except ReportRefused as e:  # a bug on one side: sending it again cannot help
                    _log.error("the root holder refused %d records: %s", len(batch), e)
                    metrics.INDEX_REPORTS_DROPPED.labels(reason="refused").inc(len(batch))
                except OSError as e:
                    with self._lock:
                        self._queue.extendleft(reversed(batch))
                        self._batch = []
                        left = len(self._queue)
                    if not self._failing:
                        _log.warning(
                            "%d records of issued certificates wait for the root holder's "
                            "index (%s); retrying",
                            left,
                            e,
                        )
                    self._failing = True
                    return left
                else:
                    metrics.INDEX_REPORTS_DELIVERED.inc(len(batch))
                    if self._failing or self._dropped:
                        _log.info(
                            "the root holder's index takes records of issued certificates "
                            "again (%d dropped meanwhile)",
                            self._dropped,
                        )
                    self._failing, self._dropped = False, 0
                with self._lock:
                    self._batch = []
                    metrics.INDEX_REPORTS_PENDING.set(len(self._queue))
            with self._lock:
                return len(self._queue)

    def start(self, interval: float) -> threading.Event:
        """`deliver` every ``interval`` seconds in a daemon thread; set the event to stop."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.deliver()
                except Exception:  # the records stay queued; the next round tries again
                    _log.exception("delivering records of issued certificates failed")

        threading.Thread(target=loop, name="hello-mtls-ca-reports", daemon=True).start()
        return stop

    def close(self) -> int:
        """The last delivery, at a worker's exit: logs and counts what is left, and returns
        how many."""
        left = self.deliver()
        if left:
            _log.warning(
                "exiting with %d records of issued certificates the root holder's index never "
                "got; their issuances are in this signer's audit trail (stdout), revoke such a "
                "certificate with revoke --cert",
                left,
            )
            metrics.INDEX_REPORTS_DROPPED.labels(reason="exit").inc(left)
        return left

    def _take(self) -> list[IssuedRecord]:
        """The oldest records whose JSON fits in `batch_bytes` (one at least), off the queue."""
        batch: list[IssuedRecord] = []
        size = 0
        while self._queue:
            more = _size(self._queue[0])
            if batch and size + more > self.batch_bytes:
                break
            batch.append(self._queue.popleft())
            size += more
        return batch


def _size(record: IssuedRecord) -> int:
    return len(record.line)
