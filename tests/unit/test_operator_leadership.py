"""The leader election (`mtls_operator.leadership`) against in-memory Leases and a fake clock:
one replica works at a time, a standby takes over when the leader stops renewing, and a leader
cut off from the API server stops before anyone else can start."""

from __future__ import annotations

import copy
import datetime
import threading
from typing import Any

import pytest

from harness.waiting import wait_until
from mtls_operator.leadership import LEASE_NAME, Elector, Timing, claimed, holder, released
from support.operator_fakes import Clock, Leases

NS = "hello-mtls"
KEY = (NS, LEASE_NAME)
NOW = datetime.datetime(2026, 9, 1, 12, 0, 0, 250000, tzinfo=datetime.UTC)


class Cut:
    """One replica's way to the API server, which can be cut (a network partition)."""

    def __init__(self, api: Leases) -> None:
        self.api = api
        self.cut = False

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._reach()
        return self.api.get_lease(namespace, name)

    def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        self._reach()
        return self.api.create_lease(body)

    def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        self._reach()
        return self.api.replace_lease(body)

    def _reach(self) -> None:
        if self.cut:
            raise ConnectionRefusedError("connection refused")


class Replica:
    """An operator replica's elector on the shared fake clock, stepped when it asks to be."""

    def __init__(self, name: str, api: Leases | Cut, clock: Clock, *, late: float = 0.0) -> None:
        self.led = 0
        self.steps: list[float] = []
        self.elector = Elector(
            api,
            namespace=NS,
            identity=name,
            monotonic=lambda: clock.mono,
            clock=lambda: clock.now,
            on_lead=self._lead,
        )
        self.due = clock.mono + late

    def _lead(self) -> None:
        self.led += 1


def simulate(replicas: list[Replica], clock: Clock, seconds: float) -> list[tuple[float, str]]:
    """Run the replicas for ``seconds`` in 50 ms steps; returns when which one led (one at a
    time, asserted at every step)."""
    timeline = []
    end = clock.mono + seconds
    while clock.mono < end:
        for replica in replicas:
            if clock.mono >= replica.due:
                replica.steps.append(clock.mono)
                replica.due = clock.mono + replica.elector.step()
        leaders = [r.elector.identity for r in replicas if r.elector.leading()]
        assert len(leaders) <= 1, f"two leaders at {clock.mono}: {leaders}"
        if leaders:
            timeline.append((clock.mono, leaders[0]))
        clock.advance(0.05)
    return timeline


def leader_since(timeline: list[tuple[float, str]], name: str) -> float:
    return next(t for t, who in timeline if who == name)


def test_the_first_replica_creates_the_lease_and_leads() -> None:
    api, clock = Leases(), Clock()
    a = Replica("a", api, clock)
    assert not a.elector.leading()
    assert a.elector.step() == 2.0
    assert a.elector.leading() and a.led == 1
    lease = api.leases[KEY]["spec"]
    assert (lease["holderIdentity"], lease["leaseDurationSeconds"]) == ("a", 10)
    assert lease["leaseTransitions"] == 0
    acquired, renewed = lease["acquireTime"], lease["renewTime"]
    clock.advance(2)
    a.elector.step()
    lease = api.leases[KEY]["spec"]
    assert lease["acquireTime"] == acquired and lease["renewTime"] != renewed
    assert a.led == 1


def test_a_standby_never_takes_a_renewed_lease_and_takes_over_within_12_s_of_the_last_renewal() -> (
    None
):
    api, clock = Leases(), Clock()
    # b looks 1.9 s after each of a's renewals: it sees each as late as it can.
    a, b = Replica("a", api, clock), Replica("b", api, clock, late=1.9)
    before = simulate([a, b], clock, 60)
    assert {who for _, who in before} == {"a"} and b.led == 0
    last_renewal = a.steps[-1]  # then a dies: no SIGTERM, no release
    after = simulate([b], clock, 30)
    taken = leader_since(after, "b")
    assert last_renewal + 10 <= taken <= last_renewal + 12 + 0.1
    spec = api.leases[KEY]["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)
    assert b.led == 1


def test_a_standby_measures_on_its_own_clock_never_by_the_holders_timestamps() -> None:
    """A renewTime far in the past (a node whose clock is wrong) is no reason to take over: the
    Lease is given its full duration from when this replica first saw it."""
    api, clock = Leases(), Clock()
    api.create_lease(
        claimed(
            None,
            namespace=NS,
            name=LEASE_NAME,
            identity="ghost",
            lease_seconds=10,
            now=NOW - datetime.timedelta(days=300),
        )
    )
    b = Replica("b", api, clock)
    start = clock.mono
    taken = leader_since(simulate([b], clock, 20), "b")
    assert start + 10 <= taken <= start + 10.1


def test_a_standby_wakes_when_the_lease_it_watches_runs_out() -> None:
    api, clock = Leases(), Clock()
    a, b = Replica("a", api, clock), Replica("b", api, clock)
    a.elector.step()
    assert b.elector.step() == 2.0
    clock.advance(9)
    assert b.elector.step() == pytest.approx(1.01)
    clock.advance(1.01)
    b.elector.step()
    assert b.elector.leading()


def test_a_leader_cut_off_from_the_api_server_stops_before_a_standby_starts() -> None:
    api, clock = Leases(), Clock()
    way = Cut(api)
    a, b = Replica("a", way, clock), Replica("b", api, clock, late=1.9)
    simulate([a, b], clock, 10)
    assert a.elector.leading()
    way.cut = True
    last_renewal = a.steps[-1]
    timeline = simulate([a, b], clock, 30)  # asserts one leader at a time throughout
    a_stopped = max(t for t, who in timeline if who == "a")
    assert a_stopped < last_renewal + 7
    assert last_renewal + 10 <= leader_since(timeline, "b") <= last_renewal + 12 + 0.1
    way.cut = False
    a.elector.step()
    assert not a.elector.leading()  # it saw another holder; it never leads again


def test_of_two_replicas_writing_a_free_lease_at_once_one_wins() -> None:
    """Each write carries the resourceVersion it read: the slower one gets a conflict."""
    api, clock = Leases(), Clock()
    a = Replica("a", api, clock)
    a.elector.step()
    api.replace_lease(released(api.leases[KEY], now=NOW))
    seen_by_b = copy.deepcopy(api.leases[KEY])

    class Late(Leases):
        def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
            return copy.deepcopy(seen_by_b)  # read before a's write, written after it

        def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
            return api.replace_lease(body)

    b = Replica("b", Late(), clock)
    c = Replica("c", api, clock)
    c.elector.step()
    b.elector.step()
    assert holder(api.leases[KEY]) == "c" and c.elector.leading()
    assert not b.elector.leading()


def test_a_stopped_leader_stops_at_once_and_releases_for_a_standby_to_take_at_once() -> None:
    api, clock = Leases(), Clock()
    a, b = Replica("a", api, clock), Replica("b", api, clock)
    a.elector.step()
    b.elector.step()
    a.elector.stop()
    assert not a.elector.leading()
    a.elector.run()  # stopped already: it only releases
    spec = api.leases[KEY]["spec"]
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"]) == ("", 1)
    b.elector.step()
    assert b.elector.leading()


def test_a_leader_that_sees_another_holder_stops_at_once() -> None:
    api, clock = Leases(), Clock()
    a = Replica("a", api, clock)
    a.elector.step()
    lease = api.leases[KEY]
    api.replace_lease(
        claimed(lease, namespace=NS, name=LEASE_NAME, identity="z", lease_seconds=10, now=NOW)
    )
    a.elector.step()
    assert not a.elector.leading()
    assert holder(api.leases[KEY]) == "z"


def test_run_calls_on_lost_when_the_leader_cannot_renew() -> None:
    """Real time, short timing: the thread ends by ``on_lost`` once the deadline has passed."""
    api, lost = Leases(), threading.Event()
    elector = Elector(
        api,
        namespace=NS,
        identity="a",
        timing=Timing(lease_seconds=2, renew_deadline_seconds=0.6, retry_seconds=0.1),
        on_lost=lost.set,
    )
    thread = threading.Thread(target=elector.run, daemon=True)
    thread.start()
    try:
        wait_until("the elector to lead", elector.leading, 5, interval=0.02)
        api.down = True
        assert lost.wait(5)
        wait_until("its thread to end", lambda: not thread.is_alive(), 5, interval=0.02)
        assert not elector.leading()
    finally:
        elector.stop()
        thread.join(5)


@pytest.mark.parametrize(
    ("lease", "deadline", "retry"), [(10, 10.0, 2.0), (10, 7.0, 7.0), (10, 7.0, 0.0), (5, 7.0, 2.0)]
)
def test_the_timing_leaves_the_leader_time_to_stop_first(
    lease: int, deadline: float, retry: float
) -> None:
    with pytest.raises(ValueError, match="a Lease needs 0 < retry"):
        Timing(lease_seconds=lease, renew_deadline_seconds=deadline, retry_seconds=retry)


def test_the_lease_bodies_follow_the_api() -> None:
    new = claimed(None, namespace=NS, name=LEASE_NAME, identity="a", lease_seconds=10, now=NOW)
    assert new == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": NS},
        "spec": {
            "holderIdentity": "a",
            "leaseDurationSeconds": 10,
            "acquireTime": "2026-09-01T12:00:00.250000Z",
            "renewTime": "2026-09-01T12:00:00.250000Z",
            "leaseTransitions": 0,
        },
    }
    stored = {**new, "metadata": {**new["metadata"], "resourceVersion": "7"}}
    later = NOW + datetime.timedelta(seconds=2)
    renewal = claimed(
        stored, namespace=NS, name=LEASE_NAME, identity="a", lease_seconds=10, now=later
    )
    assert renewal["metadata"]["resourceVersion"] == "7"
    assert renewal["spec"]["acquireTime"] == new["spec"]["acquireTime"]
    assert renewal["spec"]["renewTime"] == "2026-09-01T12:00:02.250000Z"
    takeover = claimed(
        stored, namespace=NS, name=LEASE_NAME, identity="b", lease_seconds=10, now=later
    )
    assert takeover["spec"]["acquireTime"] == takeover["spec"]["renewTime"]
    assert (takeover["spec"]["holderIdentity"], takeover["spec"]["leaseTransitions"]) == ("b", 1)
    assert takeover["metadata"]["resourceVersion"] == "7"
    given_up = released(stored, now=later)
    assert holder(given_up) == "" and given_up["spec"]["leaseDurationSeconds"] == 1
    assert holder(None) == ""
