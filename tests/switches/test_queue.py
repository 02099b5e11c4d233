"""The switch work queue over the in-memory fake driver (the wire is tested elsewhere)."""

from __future__ import annotations

import itertools

import pytest

from metalnet.switches import driver_class
from metalnet.switches.base import PortChange, SwitchTarget
from metalnet.switches.fake import DEVICES, FakeDriver, fake_device
from metalnet.switches.queue import SESSION_ATTEMPTS, CommitRecord, SwitchQueue

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
        assert device(names, sw).commits <= 2
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


def test_unreachable_switch_fails_its_changes_and_recovers(fleet) -> None:
    queue, names, _records, opened = fleet
    device(names, "sw2").down = True
    outcome = queue.submit("sw2", PortChange("eth1", 100)).result(5)
    assert not outcome.ok and "switch sw2" in outcome.message
    device(names, "sw2").down = False
    assert queue.submit("sw2", PortChange("eth1", 100)).result(5).ok
    # retried on new sessions before giving up, then reconnected once it came back
    assert opened.count("sw2") == SESSION_ATTEMPTS + 1
