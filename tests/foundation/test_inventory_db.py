"""Inventory rules on SQLite and PostgreSQL: uniqueness is the database's, not luck."""

import threading

import pytest
from sqlalchemy import func, select

from metalnet import inventory
from metalnet.config import Settings
from metalnet.db.engine import Database, current_revision, ensure_ready, head_revision, upgrade
from metalnet.db.models import Network, Nic
from metalnet.errors import Conflict, DatabaseNotReady, InputError, NotFound


def seed(db: Database, settings: Settings) -> None:
    with db.session() as s:
        inventory.create_project(s, "acme")
        inventory.add_switch(s, "tor1", "junos", "127.0.0.1:830", "netconf", "secret")
        inventory.add_node(
            s, settings, "n1", "AA-BB-CC-00-00-01", "tor1", "ge-0/0/1", "ipmi://127.0.0.1:623"
        )


def test_upgrade_is_idempotent(db: Database) -> None:
    assert current_revision(db.engine) == head_revision(db.engine)
    assert upgrade(db.engine)[0] == head_revision(db.engine)


def test_unmigrated_database_is_refused(settings: Settings) -> None:
    database = Database(settings)
    with pytest.raises(DatabaseNotReady, match="run `metalnet db upgrade`"):
        ensure_ready(database.engine, settings)


def test_mac_stored_normalised_and_unique(db: Database, settings: Settings) -> None:
    seed(db, settings)
    with db.session() as s:
        assert s.scalar(select(Nic.mac)) == "aa:bb:cc:00:00:01"
    with pytest.raises(Conflict, match="already registered"), db.session() as s:
        inventory.add_node(
            s, settings, "n2", "aabb.cc00.0001", "tor1", "ge-0/0/2", "ipmi://127.0.0.1:623"
        )


def test_port_binds_one_nic(db: Database, settings: Settings) -> None:
    seed(db, settings)
    with pytest.raises(Conflict, match="already bound to node 'n1'"), db.session() as s:
        inventory.add_node(
            s, settings, "n2", "aa:bb:cc:00:00:02", "tor1", "ge-0/0/1", "ipmi://127.0.0.1:623"
        )


def test_new_node_port_wanted_in_service_vlan(db: Database, settings: Settings) -> None:
    seed(db, settings)
    with db.session() as s:
        port = inventory.node_port(inventory.get_node(s, "n1"))
        assert port.desired_vlan == settings.service_vlan
        inventory.delete_node(s, settings, "n1")
    with db.session() as s:
        switch = inventory.get_switch(s, "tor1")
        assert switch.ports[0].desired_vlan == settings.parking_vlan


def test_vlans_allocated_from_range_and_unique(db: Database, settings: Settings) -> None:
    seed(db, settings)
    with db.session() as s:
        a = inventory.create_network(s, settings, "acme", "a", "10.1.0.0/24")
        b = inventory.create_network(s, settings, "acme", "b", "10.2.0.0/24")
        assert (a.vlan, b.vlan) == (100, 101)
    with pytest.raises(Conflict, match="VLAN 101 is already taken"), db.session() as s:
        inventory.create_network(s, settings, "acme", "c", "10.3.0.0/24", vlan=101)
    with pytest.raises(InputError, match="service"), db.session() as s:
        inventory.create_network(s, settings, "acme", "c", "10.3.0.0/24", vlan=10)
    with pytest.raises(InputError, match="parking"), db.session() as s:
        inventory.create_network(s, settings, "acme", "c", "10.3.0.0/24", vlan=4000)


def test_concurrent_creates_never_share_a_vlan(db: Database, settings: Settings) -> None:
    """Eight threads race for a free VLAN; the unique column decides, everyone gets one."""
    with db.session() as s:
        inventory.create_project(s, "acme")
    errors: list[Exception] = []
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        barrier.wait()
        for _attempt in range(20):
            try:
                with db.session() as s:
                    inventory.create_network(s, settings, "acme", f"n{i}", f"10.{i}.0.0/24")
                return
            except Conflict as exc:
                if "already exists" in str(exc):
                    errors.append(exc)
                    return
            except Exception as exc:  # SQLite busy or a serialization race: retry
                last = exc
        errors.append(last)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with db.session() as s:
        vlans = list(s.scalars(select(Network.vlan)))
    assert len(vlans) == 8 and len(set(vlans)) == 8


def test_delete_guards(db: Database, settings: Settings) -> None:
    seed(db, settings)
    with db.session() as s:
        inventory.create_network(s, settings, "acme", "web", "10.1.0.0/24")
    with pytest.raises(Conflict, match=r"still has networks \(web\)"), db.session() as s:
        inventory.delete_project(s, "acme")
    with pytest.raises(Conflict, match="still has nodes on ports ge-0/0/1"), db.session() as s:
        inventory.delete_switch(s, "tor1")
    with pytest.raises(NotFound, match="unknown project 'nope'"), db.session() as s:
        inventory.delete_project(s, "nope")


def test_failed_add_writes_nothing(db: Database, settings: Settings) -> None:
    seed(db, settings)
    with pytest.raises(InputError), db.session() as s:
        inventory.add_node(
            s, settings, "n2", "aa:bb:cc:00:00:02", "tor1", "ge-0/0/2;", "ipmi://127.0.0.1:623"
        )
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Nic)) == 1
