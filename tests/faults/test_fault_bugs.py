"""Minimal reproductions of the bugs the fault campaign found (regression tests).

Each is the smallest setup that shows one bug; the campaign scenarios show its effect
on lifecycles (test_fault_campaign.py)..
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from metalnet.config import load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.sim.lab.faults.rig import restart_postgres
from metalnet.sim.lab.postgres import PgCluster, find_pg_bin
from metalnet.sim.switch.device import SimSwitch
from metalnet.switches.base import PortChange
from metalnet.switches.junos import JunosDriver
from metalnet.switches.queue import SwitchQueue
from metalnet.switching import Switching


@pytest.fixture
def sw() -> Iterator[SimSwitch]:
    with SimSwitch.running("tor1", ports=4, username="u", password="p") as switch:
        yield switch


def _queue(sw: SimSwitch) -> SwitchQueue:
    def connect(_name: str) -> JunosDriver:
        driver = JunosDriver(sw.target(), timeout=10)
        driver.open()
        return driver

    return SwitchQueue(connect, lambda _name: JunosDriver)


def test_a_session_lost_before_the_commit_is_retried_on_a_new_session(sw: SimSwitch) -> None:
    """Nothing was applied and setting a VLAN is idempotent: the queue can safely retry."""
    sw.faults.drop_next("commit")
    with _queue(sw) as queue:
        [outcome] = queue.apply("tor1", [PortChange("ge-0/0/1", 10)], timeout=30)
    assert outcome.ok, outcome.message
    assert sw.port_vlans()["ge-0/0/1"] == 10


def test_a_commit_applied_but_unanswered_is_not_left_to_roll_back(sw: SimSwitch) -> None:
    """The confirmed commit landed; metalnet reports failure and leaves it unconfirmed, so
    the switch rolls it back later, behind metalnet's back."""
    sw.faults.drop_next("commit", after=True)
    with _queue(sw) as queue:
        [outcome] = queue.apply("tor1", [PortChange("ge-0/0/1", 10)], timeout=30)
    assert outcome.ok, outcome.message
    assert not sw.confirm_pending(), "the applied commit was never confirmed"


@pytest.fixture
def own_pg() -> Iterator[PgCluster]:
    """A private cluster: this test restarts it."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not installed")
    cluster = PgCluster(bin_dir)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.mark.postgres
def test_switch_guard_survives_a_database_restart_while_held(own_pg: PgCluster) -> None:
    """The session-level advisory lock dies with its connection; releasing it must not
    turn a commit the device applied into a failure."""
    settings = load_settings(None, own_pg.new_database())
    db = Database(settings)
    upgrade(db.engine)
    switching = Switching(db)
    try:
        with switching.exclusive("tor1"):
            restart_postgres(own_pg)  # the device's commit would happen here
    finally:
        switching.close()
        db.engine.dispose()
