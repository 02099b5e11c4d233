"""The switch work queue: batching over the in-memory fake driver, and the commit scheme
(provisional commits, confirmation, re-application after a lost session) over the
Junos simulator."""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalnet.sim.switch import SimSwitch
from metalnet.switches import driver_class
from metalnet.switches.base import CommitRecord, PortChange, SwitchTarget
from metalnet.switches.fake import DEVICES, FakeDriver, fake_device
from metalnet.switches.junos import JunosDriver
from metalnet.switches.queue import SESSION_RETRY, ChangeOutcome, Precondition, SwitchQueue

_ports = itertools.count(20000)


@pytest.fixture
def fleet():
    """Two fake switches with a 0.2 s commit latency and a queue over them."""
    names = {"sw1": next(_ports), "sw2": next(_ports)}
    for port in names.values():
        fake_device("127.0.0.1", port).latency = 0.2
    records: list[CommitRecord] = []
    opened: list[str] = []

    def connect(name: str) -> FakeDriver:
        opened.append(name)
        driver = FakeDriver(SwitchTarget(name, "127.0.0.1", names[name], "u", "p"))
        driver.open()
        return driver

    queue = SwitchQueue(connect, lambda _name: driver_class("fake"), records.append)
    yield queue, names, records, opened
    queue.close()
    for port in names.values():
        DEVICES.pop(("127.0.0.1", port), None)


def device(names, switch):
    return fake_device("127.0.0.1", names[switch])


def test_pending_changes_coalesce_into_one_commit_per_switch(fleet) -> None:
    queue, names, _records, opened = fleet
    futures = [
        queue.submit(sw, PortChange(f"eth{i}", 100 + i)) for sw in ("sw1", "sw2") for i in range(20)
    ]
    outcomes = [f.result(10) for f in futures]
    assert all(o.ok for o in outcomes)
    for sw in ("sw1", "sw2"):
        assert device(names, sw).ports["eth7"] == 107
    # the first change may commit alone; everything that piled up meanwhile goes in one
    # transaction: at most 2 per switch, each journaled once, plus their confirmations
    assert len(_records) <= 4 and all(r.ok for r in _records)
    for sw in ("sw1", "sw2"):
        assert device(names, sw).commits <= 4 and device(names, sw).rollback is None
    assert sorted(opened) == ["sw1", "sw2"]  # one session per switch, reused


def test_later_change_supersedes_pending_one(fleet) -> None:
    queue, names, _records, _opened = fleet
    blocker = queue.submit("sw1", PortChange("eth0", 100))  # occupies the worker
    first = queue.submit("sw1", PortChange("eth1", 200))
    second = queue.submit("sw1", PortChange("eth1", 300))
    assert blocker.result(5).ok
    a, b = first.result(5), second.result(5)
    assert a.superseded and "superseded by VLAN 300" in a.message
    assert b.ok and not b.superseded
    assert device(names, "sw1").ports["eth1"] == 300


def test_the_newest_change_of_a_port_wins_whole_enabled_included(fleet) -> None:
    """A disable then an enable of the same VLAN pending together: the enable wins
    (the VLAN alone would not tell them apart), and the other way round."""
    queue, names, _records, _opened = fleet
    blocker = queue.submit("sw1", PortChange("eth0", 100))  # occupies the worker
    off = queue.submit("sw1", PortChange("eth1", 10, enabled=False))
    on = queue.submit("sw1", PortChange("eth1", 10))
    off2 = queue.submit("sw1", PortChange("eth2", 10))
    on2 = queue.submit("sw1", PortChange("eth2", 10, enabled=False))
    assert blocker.result(5).ok
    assert off.result(5).superseded and off.result(5).message == "superseded by VLAN 10"
    assert on2.result(5).ok and not on2.result(5).superseded
    assert on.result(5).ok and off2.result(5).superseded
    assert off2.result(5).message == "superseded by VLAN 10 disabled"
    with FakeDriver(SwitchTarget("sw1", "127.0.0.1", names["sw1"], "u", "p")) as driver:
        states = driver.read_ports(["eth1", "eth2"])
    assert states["eth1"].enabled and not states["eth2"].enabled
    assert states["eth2"].vlans == (10,)


def test_a_change_whose_precondition_fails_at_the_commit_is_dropped(fleet) -> None:
    """The lane asks `recheck` right before the transaction: a stale change is reported
    superseded and never reaches the device; the others of its batch are applied."""
    queue, names, records, _opened = fleet
    asked: list[list[tuple[PortChange, Precondition]]] = []

    def recheck(_switch: str, items) -> dict[str, str]:
        asked.append(list(items))
        return {"eth1": "the desired VLAN is now 10"}

    queue.recheck = recheck
    stale, fresh, free = queue.submit_many(
        "sw1",
        [PortChange("eth1", 200), PortChange("eth2", 300), PortChange("eth3", 400)],
        [Precondition(200), Precondition(300), None],
    )
    dropped = stale.result(5)
    assert dropped.superseded and "the desired VLAN is now 10" in dropped.message
    assert fresh.result(5).ok and free.result(5).ok
    assert asked == [
        [(PortChange("eth1", 200), Precondition(200)), (PortChange("eth2", 300), Precondition(300))]
    ]  # unconditional changes are not asked about
    ports = device(names, "sw1").ports
    assert ports["eth1"] is None and ports["eth2"] == 300 and ports["eth3"] == 400
    assert all(PortChange("eth1", 200) not in r.changes for r in records)


def test_bad_values_fail_alone_before_sending(fleet) -> None:
    queue, _names, records, _ = fleet
    outcomes = queue.apply(
        "sw1", [PortChange("eth1", 100), PortChange("eth2;", 100), PortChange("eth3", 5000)], 5
    )
    assert [o.ok for o in outcomes] == [True, False, False]
    assert "eth2;" in outcomes[1].message and "5000" in outcomes[2].message
    assert all(r.changes == (PortChange("eth1", 100),) for r in records)


def test_refused_batch_isolates_the_culprit_and_applies_the_rest(fleet) -> None:
    queue, names, records, _ = fleet
    changes = [PortChange(f"eth{i}", 100) for i in range(7)] + [PortChange("eth999", 100)]
    outcomes = queue.apply("sw1", changes, 10)
    assert [o.ok for o in outcomes] == [True] * 7 + [False]
    assert "eth999" in outcomes[-1].message and "does not exist" in outcomes[-1].message
    assert all(device(names, "sw1").ports[f"eth{i}"] == 100 for i in range(7))
    failed = [r for r in records if not r.ok]
    assert failed and all(PortChange("eth999", 100) in r.changes for r in failed)


def test_unreachable_switch_fails_its_changes_and_recovers(fleet, virtual_clock) -> None:
    queue, names, _records, opened = fleet
    device(names, "sw2").down = True
    outcome = queue.submit("sw2", PortChange("eth1", 100)).result(5)
    assert not outcome.ok and "switch sw2" in outcome.message
    device(names, "sw2").down = False
    assert queue.submit("sw2", PortChange("eth1", 100)).result(5).ok
    # retried on new sessions before giving up, then reconnected once it came back
    assert opened.count("sw2") == SESSION_RETRY.attempts + 1
    assert virtual_clock == [0.5, 1.0, 2.0]  # the one retry policy's back-off


def test_a_staged_change_replaced_in_a_lost_transaction_still_gets_its_outcome(
    fleet, virtual_clock
) -> None:
    """eth1 -> 100 is staged (not yet confirmed) when eth1 -> 101 arrives; the
    transaction of 101 loses the session, so the switch rolls both back and 101 is
    staged again on a new session. The change to 100 is told it was superseded: it
    was dropped with no outcome, and its caller waited forever."""
    queue, names, _records, _ = fleet
    dev = device(names, "sw1")
    dev.losses = ["ok", "before"]  # the first stage goes through, the next one is lost
    first = queue.submit("sw1", PortChange("eth1", 100))
    deadline = time.monotonic() + 5
    while not dev.lock.locked():  # the first stage is under way (0.2 s on the device)
        assert time.monotonic() < deadline, "the first change was never staged"
        time.sleep(0.001)
    second = queue.submit("sw1", PortChange("eth1", 101))
    assert second.result(5).ok
    replaced = first.result(5)
    assert replaced.ok and replaced.superseded and "101" in replaced.message
    assert dev.ports["eth1"] == 101 and dev.rollback is None


def test_a_driver_bug_while_confirming_fails_the_changes_and_the_lane_goes_on(
    fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception from a driver's confirm (a bug, not a switch error) must
    not end the lane's thread: every caller would wait forever."""
    queue, names, _records, _ = fleet
    real, broken = FakeDriver.confirm, []

    def confirm_broken_once(self: FakeDriver) -> None:
        if not broken:
            broken.append(True)
            raise RuntimeError("driver bug")
        real(self)

    monkeypatch.setattr(FakeDriver, "confirm", confirm_broken_once)
    outcome = queue.submit("sw1", PortChange("eth1", 100)).result(5)
    assert not outcome.ok and "driver bug" in outcome.message
    assert device(names, "sw1").ports["eth1"] is None  # the session ended: rolled back
    assert queue.submit("sw1", PortChange("eth1", 101)).result(5).ok


# ------------------------------------------------------------------ the commit scheme

PORTS = [f"eth{i}" for i in range(4)]


# the virtual clock only accumulates waits, so sharing it across examples is harmless
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.tuples(
            st.lists(st.tuples(st.sampled_from(PORTS), st.integers(100, 103)), min_size=1),
            st.lists(st.sampled_from(["ok", "before", "after"]), max_size=3),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_reported_change_is_never_rolled_back(steps, virtual_clock) -> None:
    """Model-based: bursts of changes with session losses injected before or after
    commits and confirmations, each burst sent at once or while the next transaction
    is on the device. Every change gets exactly one outcome; whenever a change is
    reported applied, nothing is pending on the device that could roll back; in the
    end every port holds the last change reported applied for it."""
    dev = fake_device("127.0.0.1", port := next(_ports), ports=4)
    target = SwitchTarget("sw", "127.0.0.1", port, "u", "p")
    pending_at_report: list[bool] = []
    submitted: list[tuple[PortChange, Future[ChangeOutcome]]] = []

    def connect(_name: str) -> FakeDriver:
        return FakeDriver(target)

    def send(queue: SwitchQueue, burst: list[tuple[str, int]], losses: list[str]) -> None:
        """Called with the device's lock held, so bursts are numbered as they arrive."""
        dev.losses.extend(losses)
        changes = [PortChange(p, v) for p, v in burst]
        futures = queue.submit_many("sw", changes)
        for future in futures:
            future.add_done_callback(
                lambda f: pending_at_report.append(
                    f.result().ok and not f.result().superseded and dev.rollback is not None
                )
            )
        submitted.extend(zip(changes, futures, strict=True))

    try:
        with SwitchQueue(connect, lambda _n: FakeDriver, gather=0.0) as queue:
            for burst, losses, during in steps:
                if during:
                    dev.during_stage.append(functools.partial(send, queue, burst, losses))
                else:
                    with dev.lock:
                        send(queue, burst, losses)
            deadline = time.monotonic() + 10
            while dev.during_stage and not all(f.done() for _, f in list(submitted)):
                assert time.monotonic() < deadline, "the queue went idle with changes queued"
                time.sleep(0.001)
            with dev.lock:  # bursts whose transaction never came are sent now
                while dev.during_stage:
                    dev.during_stage.pop(0)()
            outcomes = [(c, f.result(10)) for c, f in submitted]  # each gets its outcome
        assert not any(pending_at_report)
        assert dev.rollback is None
        for port in PORTS:
            last = [(c, o) for c, o in outcomes if c.interface == port]
            if last and last[-1][1].ok:
                assert dev.ports[port] == last[-1][0].vlan, (port, outcomes)
    finally:
        DEVICES.pop(("127.0.0.1", port), None)


@pytest.fixture
def tor() -> Iterator[SimSwitch]:
    """A Junos switch whose commits take 0.3 s, so changes can arrive during one."""
    with SimSwitch.running("tor1", ports=8, commit_latency=0.3) as sw:
        yield sw


def _junos_queue(sw: SimSwitch) -> SwitchQueue:
    def connect(_name: str) -> JunosDriver:
        driver = JunosDriver(sw.target(), timeout=10)
        driver.open()
        return driver

    return SwitchQueue(connect, lambda _name: JunosDriver)


def _watch(sw: SimSwitch, futures: list[Future[ChangeOutcome]]) -> list[bool]:
    """For each outcome, whether a confirmed commit was pending when it was reported."""
    pending_when_reported: list[bool] = []
    for future in futures:
        future.add_done_callback(lambda _f: pending_when_reported.append(sw.confirm_pending()))
    return pending_when_reported


def _wait(condition, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_lone_change_is_reported_only_once_confirmed(tor: SimSwitch) -> None:
    with _junos_queue(tor) as queue:
        futures = queue.submit_many("tor1", [PortChange("ge-0/0/1", 100)])
        pending = _watch(tor, futures)
        assert futures[0].result(30).ok
    assert pending == [False]
    assert tor.commit_count() == 2  # commit confirmed, then the confirming commit


def test_changes_arriving_during_a_commit_cost_one_commit_per_transaction(tor: SimSwitch) -> None:
    """T1 is staged; T2, arriving during T1, is staged too and confirms nothing by itself;
    one confirming commit then reports both: 3 device commits for 2 transactions (the
    old scheme made 4)."""
    with _junos_queue(tor) as queue:
        first = queue.submit_many("tor1", [PortChange("ge-0/0/1", 100)])
        _wait(lambda: tor.lock_holder() is not None, "the first transaction")
        second = queue.submit_many("tor1", [PortChange("ge-0/0/2", 200)])
        futures = first + second
        pending = _watch(tor, futures)
        outcomes = [f.result(30) for f in futures]
    assert all(o.ok for o in outcomes)
    assert pending == [False, False]
    assert queue.commits == 2 and tor.commit_count() == 3
    assert tor.port_vlans()["ge-0/0/1"] == 100 and tor.port_vlans()["ge-0/0/2"] == 200


def test_staged_changes_lost_with_the_session_are_applied_again(tor: SimSwitch) -> None:
    """The session dies while T1 is staged (its confirmation, or T2's commit, never
    answers): the switch rolls T1 back, so the lane stages it again on a new session
    before reporting anything."""
    armed = threading.Event()

    def arm(_sw: SimSwitch, _vlans: dict[str, int | None]) -> None:
        if not armed.is_set():
            armed.set()
            tor.faults.drop_next("commit")  # the next commit after T1's never happens

    tor.on_commit(arm)
    with _junos_queue(tor) as queue:
        first = queue.submit_many("tor1", [PortChange("ge-0/0/1", 100)])
        _wait(armed.is_set, "the first commit")
        second = queue.submit_many("tor1", [PortChange("ge-0/0/2", 200)])
        futures = first + second
        pending = _watch(tor, futures)
        outcomes = [f.result(30) for f in futures]
    assert all(o.ok for o in outcomes), [o.message for o in outcomes]
    assert pending == [False, False]
    assert not tor.confirm_pending()
    assert tor.port_vlans()["ge-0/0/1"] == 100 and tor.port_vlans()["ge-0/0/2"] == 200


def test_the_lock_is_asked_before_the_recheck_and_released_when_nothing_is_left(
    tor: SimSwitch,
) -> None:
    """The lane sends the switch's lock and reads before it re-checks the preconditions,
    so the switch answers during the database's work; when the re-check leaves nothing
    to stage, the lock is released and nothing is committed. The next change goes on."""
    locked_during_recheck: list[bool] = []
    stale = [True]

    def recheck(_switch, items):
        locked_during_recheck.append(_wait_for(lambda: tor.lock_holder() is not None))
        return {c.interface: "the desired VLAN is now 7" for c, _p in items} if stale[0] else {}

    def connect(_name: str) -> JunosDriver:
        driver = JunosDriver(tor.target(), timeout=10)
        driver.open()
        return driver

    with SwitchQueue(connect, lambda _name: JunosDriver, recheck=recheck) as queue:
        dropped = queue.submit("tor1", PortChange("ge-0/0/1", 100), Precondition(5)).result(10)
        assert dropped.superseded and "the desired VLAN is now 7" in dropped.message
        _wait(lambda: tor.lock_holder() is None, "the lock released")
        assert tor.commit_count() == 0 and not tor.confirm_pending()
        stale[0] = False
        made = queue.submit("tor1", PortChange("ge-0/0/1", 101), Precondition(101)).result(10)
    assert made.ok and not made.superseded
    assert locked_during_recheck == [True, True]
    assert tor.port_vlans()["ge-0/0/1"] == 101 and tor.lock_holder() is None


def _wait_for(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()
