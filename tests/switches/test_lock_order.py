"""One lock order for every port change on PostgreSQL: the ports' rows, then the rows
of the instances holding their nodes (`guard.lock_ports`).

A failed spawn's writer that took the instance first and a queue's lane that took the
port first once waited for each other, and PostgreSQL aborted one of them (found by
tests/reconcile/test_preconditions.py in CI). Here the order is observed directly: while
another transaction holds the port, a guarded check must wait for it holding nothing,
so the instance stays free to lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import select, text

from metalnet import inventory
from metalnet.config import load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.db.models import Instance, SwitchPort
from metalnet.lifecycle import instances
from metalnet.switches import guard

pytestmark = pytest.mark.postgres
WAIT_SECONDS = 30.0


@pytest.fixture
def pg_db(pg_cluster) -> Iterator[Database]:
    settings = load_settings(None, pg_cluster.new_database())
    db = Database(replace(settings, image_allow=("i",)))
    upgrade(db.engine)
    with db.session() as s:
        inventory.add_switch(s, "tor1", "junos", "127.0.0.1:830", "netconf", "pw")
        inventory.create_project(s, "p")
        inventory.create_network(s, db.settings, "p", "net", "10.1.0.0/24")
        inventory.add_node(
            s, db.settings, "n1", "52:54:00:00:00:01", "tor1", "ge-0/0/1",
            "ipmi://127.0.0.1:10001", initial_erase=False,
        )  # fmt: skip
        inst = instances.create_instance(
            s, "web", "p", "net", "n1", "http://i/i.img", "a" * 64, settings=db.settings
        )
        inst.state, inst.step = "active", "active"
    yield db
    db.engine.dispose()


def waiting_for_a_lock(db: Database) -> bool:
    with db.engine.connect() as conn:
        return bool(
            conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        )


def test_a_guarded_check_waits_for_the_port_before_it_locks_the_instance(
    pg_db: Database,
) -> None:
    checked = threading.Event()
    release = threading.Event()

    def guarded_check() -> None:
        with pg_db.session() as s:
            port = s.scalar(select(SwitchPort).where(SwitchPort.interface == "ge-0/0/1"))
            guard.owners(s, [port])
            checked.set()
            release.wait(WAIT_SECONDS)  # its locks are held until its transaction ends

    with pg_db.session() as holder:
        holder.scalar(select(SwitchPort).with_for_update())
        checker = threading.Thread(target=guarded_check)
        checker.start()
        try:
            deadline = time.monotonic() + WAIT_SECONDS
            while not (checked.is_set() or waiting_for_a_lock(pg_db)):
                assert time.monotonic() < deadline, "the check neither waited nor finished"
                time.sleep(0.05)
            with pg_db.session() as other:
                locked = other.scalar(select(Instance).with_for_update(nowait=True))
                assert locked is not None and not checked.is_set()
        finally:
            holder.rollback()
            release.set()
            checker.join(WAIT_SECONDS)
    assert checked.is_set() and not checker.is_alive()
