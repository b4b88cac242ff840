"""Which replica works: one leader, elected with the ``coordination.k8s.io/v1`` Lease
`LEASE_NAME` in the operator's own namespace.

Every replica keeps its kopf watches running, so what it knows of pods and Secrets is current;
only the leader works (the reconcile loop, the root-rotation driver, the work queue's
``POST /sign`` and Secret writes, the pod-certificate signer). `Elector.leading` is the gate
they ask. The rules are client-go's (``k8s.io/client-go/tools/leaderelection``):

* The leader renews the Lease every ``retry_seconds``. Every write carries the resourceVersion
  it read, so of two replicas writing at once one gets a conflict and loses the round.
* A standby takes the Lease only once it has seen it unchanged for its
  ``leaseDurationSeconds``, measured on its own clock from when it first saw that version
  (clocks of two nodes are never compared), or at once when the Lease is released or absent.
* The leader may work only until ``renew_deadline_seconds`` after it started its last
  successful renewal. That is shorter than the lease, so a leader that cannot reach the API
  server stops before a standby can take over. Past it the leader has lost for good: ``on_lost``
  (the operator exits and Kubernetes restarts it as a standby, with a fresh memory).
* On a clean shutdown (`stop`) it stops working at once and then releases the Lease (an empty
  holder), so a standby takes over at its next poll instead of after a lease duration.

Why not ``kubernetes.leaderelection`` of the kubernetes client (37.0.3)? Its ``LeaseLock``
does write with the resourceVersion it read, but: any error other than ``ApiException`` (a
refused connection raises urllib3's ``MaxRetryError``) ends ``LeaderElection.run`` without
``onstopped_leading``, so a leader would keep working without a lease and a standby would never
try again; it cannot be stopped and never releases the Lease
(kubernetes-client/python#1669, #2379), so every rollout would wait out the lease; its Lease
calls have no request timeout and its deadlines follow the wall clock (``time.time``).
"""

from __future__ import annotations

import copy
import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mtls_contract.marks import LEASE_NAME
from mtls_operator.ports import Conflict, Leases

__all__ = ["LEASE_NAME", "Elector", "Timing", "claimed", "holder", "released"]

_log = logging.getLogger("mtls_operator")


@dataclass(frozen=True)
class Timing:
    """How long a Lease holds, when the leader gives up, how often everyone tries."""

    lease_seconds: int = 10
    """``leaseDurationSeconds``: how long a standby waits for a Lease that does not change."""
    renew_deadline_seconds: float = 7.0
    """How long after the start of its last successful renewal the leader may still work."""
    retry_seconds: float = 2.0
    """How often the leader renews and a standby looks."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_seconds < self.renew_deadline_seconds < self.lease_seconds:
            raise ValueError(
                f"a Lease needs 0 < retry ({self.retry_seconds:g} s) < renew deadline"
                f" ({self.renew_deadline_seconds:g} s) < lease ({self.lease_seconds} s)"
            )


def holder(lease: Mapping[str, Any] | None) -> str:
    """Who holds ``lease``: its ``holderIdentity``, "" when absent or released."""
    if lease is None:
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def claimed(
    lease: Mapping[str, Any] | None,
    *,
    namespace: str,
    name: str,
    identity: str,
    lease_seconds: int,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The Lease that ``identity`` writes to hold it from ``now``: a new one, its renewal (same
    acquireTime) or a takeover (acquireTime now, one more transition). It keeps the
    resourceVersion it was read at, the precondition of the write."""
    stamp = _micro_time(now)
    if lease is None:
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"leaseTransitions": 0},
        }
    else:
        body = copy.deepcopy(dict(lease))
        body["spec"] = body.get("spec") or {}
    spec = body["spec"]
    if lease is not None and holder(lease) != identity:
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
    if lease is None or holder(lease) != identity:
        spec["acquireTime"] = stamp
    spec.update(holderIdentity=identity, leaseDurationSeconds=lease_seconds, renewTime=stamp)
    return body


def released(lease: Mapping[str, Any], *, now: datetime.datetime) -> dict[str, Any]:
    """``lease`` given up: no holder, so that a standby takes it at once (as client-go's
    ``ReleaseOnCancel`` writes it)."""
    body = copy.deepcopy(dict(lease))
    stamp = _micro_time(now)
    body["spec"] = {
        **(body.get("spec") or {}),
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": stamp,
        "renewTime": stamp,
    }
    return body


class Elector:
    """Campaigns for the Lease and keeps it; `leading` says whether this replica may work now.

    `run` (on a thread of its own) calls `step` every ``retry_seconds`` (a standby also wakes
    when the Lease it watches runs out), ``on_lead`` once when the Lease is won, and
    ``on_lost``, which must stop the process, when leadership lapses.
    """

    def __init__(
        self,
        api: Leases,
        *,
        namespace: str,
        identity: str,
        name: str = LEASE_NAME,
        timing: Timing = Timing(),
        on_lead: Callable[[], None] = lambda: None,
        on_lost: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.identity = identity
        self.timing = timing
        self._api = api
        self._namespace = namespace
        self._name = name
        self._where = f"{namespace}/{name}"  # for the log
        self._on_lead = on_lead
        self._on_lost = on_lost
        self._monotonic = monotonic
        self._clock = clock
        self._stopped = threading.Event()
        self._renewed_at: float | None = None  # when our last successful write was started
        self._led = False
        # The Lease as last seen: its resourceVersion, holder, duration, and since when.
        self._seen_version = ""
        self._seen_holder = ""
        self._seen_seconds = float(timing.lease_seconds)
        self._seen_at = 0.0

    def leading(self) -> bool:
        """Whether this replica may work now: it holds the Lease, renewed it less than the
        renew deadline ago, and is not stopping."""
        renewed = self._renewed_at  # one read: the elector's thread may replace it meanwhile
        return (
            renewed is not None
            and not self._stopped.is_set()
            and self._monotonic() < renewed + self.timing.renew_deadline_seconds
        )

    def run(self) -> None:
        """Campaign and renew until `stop`, then release the Lease if this replica holds it."""
        while not self._stopped.is_set():
            delay = self.step()
            if self._led and not self.leading() and not self._stopped.is_set():
                _log.error(
                    "%s lost the Lease %s: not renewed for %g s; this replica stops working",
                    self.identity,
                    self._where,
                    self.timing.renew_deadline_seconds,
                )
                self._on_lost()
                return
            self._stopped.wait(delay)
        self._release()

    def stop(self) -> None:
        """Stop working at once; `run` then releases the Lease and returns."""
        self._stopped.set()

    def step(self) -> float:
        """One round: read the Lease and write it if this replica may hold it. Returns the
        seconds until the next round."""
        started = self._monotonic()
        try:
            lease = self._api.get_lease(self._namespace, self._name)
            self._observe(lease)
            if self._renewed_at is not None and holder(lease) != self.identity:
                self._renewed_at = None  # taken over or removed meanwhile: stop at once
            elif self._may_take(lease):
                body = claimed(
                    lease,
                    namespace=self._namespace,
                    name=self._name,
                    identity=self.identity,
                    lease_seconds=self.timing.lease_seconds,
                    now=self._clock(),
                )
                written = (
                    self._api.create_lease(body) if lease is None else self._api.replace_lease(body)
                )
                self._renewed_at = started
                self._observe(written)
        except Conflict:
            _log.info("Lease %s: another replica wrote it first", self._where)
        except Exception as error:  # the API server or the network: try again next round
            _log.warning("Lease %s: %s", self._where, error)
        if not self._led and self.leading():
            self._led = True
            _log.info("%s leads: it holds the Lease %s", self.identity, self._where)
            self._on_lead()
        return self._delay()

    def _observe(self, lease: Mapping[str, Any] | None) -> None:
        if lease is None:
            self._seen_version, self._seen_holder = "", ""
            return
        version = str(lease["metadata"].get("resourceVersion", ""))
        if version == self._seen_version:
            return
        # Noted when the answer came, never earlier: the holder's own deadline began before
        # its write, so it ends before this replica's wait does.
        self._seen_version, self._seen_at = version, self._monotonic()
        seconds = (lease.get("spec") or {}).get("leaseDurationSeconds")
        self._seen_seconds = float(seconds or self.timing.lease_seconds)
        if holder(lease) != self._seen_holder:
            self._seen_holder = holder(lease)
            _log.info("the Lease %s is held by %s", self._where, self._seen_holder or "nobody")

    def _may_take(self, lease: Mapping[str, Any] | None) -> bool:
        if holder(lease) in ("", self.identity):
            return True
        return self._monotonic() >= self._seen_at + self._seen_seconds

    def _delay(self) -> float:
        retry = self.timing.retry_seconds
        if self._seen_holder in ("", self.identity):
            return retry
        expires_in = self._seen_at + self._seen_seconds - self._monotonic()
        return expires_in + 0.01 if 0 < expires_in < retry else retry

    def _release(self) -> None:
        if self._renewed_at is None:
            return
        try:
            lease = self._api.get_lease(self._namespace, self._name)
            if lease is not None and holder(lease) == self.identity:
                self._api.replace_lease(released(lease, now=self._clock()))
                _log.info("%s released the Lease %s", self.identity, self._where)
        except Exception as error:  # a standby then waits one lease duration
            _log.warning("Lease %s not released: %s", self._where, error)


def _micro_time(moment: datetime.datetime) -> str:
    """A ``metav1.MicroTime`` as the API's JSON has it."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
