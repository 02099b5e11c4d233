"""The reservation rule: served while a live instance holds the node; its address back
in the pool once released; never the gateway or the DHCP server's own address."""

from __future__ import annotations

import ipaddress
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import select

from metalnet import inventory
from metalnet.config import load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.db.models import Instance, IpAllocation
from metalnet.dhcp.reservations import live_reservations, networks_needing_dhcp, project_network
from metalnet.errors import Conflict
from metalnet.sim.lab.dhcp_world import claim


@pytest.fixture
def inventory_db(db: Database) -> Database:
    """Project acme with network tiny (a /29: hosts .1-.6, gateway .1, server .6)."""
    with db.session() as session:
        inventory.add_switch(session, "sw1", "fake", "192.0.2.1:830", "admin", "pw")
        inventory.create_project(session, "acme")
        inventory.create_network(session, db.settings, "acme", "tiny", "10.50.0.0/29")
        for i in range(1, 7):
            mac = f"02:00:00:00:50:{i:02x}"
            inventory.add_node(session, db.settings, f"n{i}", mac, "sw1", f"eth{i}", f"ipmi://b{i}")
    return db


def spawn(db: Database, name: str, node: str) -> None:
    with db.session() as session:
        claim(session, "acme", "tiny", node, name)


def release(db: Database, name: str) -> None:
    """What the lifecycle records at the end of a terminate (Engine._terminate_release)."""
    with db.session() as session:
        instance = session.scalar(select(Instance).where(Instance.name == name))
        instance.holds_node_id, instance.state = None, "deleted"
        instance.node.state = "available"


def served(db: Database) -> dict[str, str]:
    with db.session() as session:
        network = inventory.get_network(session, "acme", "tiny")
        return {i.name: a.address for a, i in live_reservations(session, network.id)}


def test_addresses_skip_the_gateway_and_the_server_and_run_out(inventory_db: Database) -> None:
    for i in range(1, 5):
        spawn(inventory_db, f"i{i}", f"n{i}")

    assert served(inventory_db) == {f"i{i}": f"10.50.0.{i + 1}" for i in range(1, 5)}
    with pytest.raises(Conflict, match=r"network 'tiny' \(10\.50\.0\.0/29\) has no free address"):
        spawn(inventory_db, "i5", "n5")


def test_a_released_instance_is_no_longer_served_and_its_address_returns(
    inventory_db: Database,
) -> None:
    spawn(inventory_db, "i1", "n1")
    spawn(inventory_db, "i2", "n2")

    release(inventory_db, "i1")

    assert served(inventory_db) == {"i2": "10.50.0.3"}
    spawn(inventory_db, "i3", "n3")
    assert served(inventory_db) == {"i2": "10.50.0.3", "i3": "10.50.0.2"}
    with inventory_db.session() as session:  # the released row itself is gone
        assert len(session.scalars(select(IpAllocation)).all()) == 2


def test_a_network_needs_dhcp_only_while_it_has_a_live_reservation(
    inventory_db: Database,
) -> None:
    def needing() -> list[str]:
        with inventory_db.session() as session:
            return [n.name for n in networks_needing_dhcp(session)]

    assert needing() == []
    spawn(inventory_db, "i1", "n1")
    assert needing() == ["tiny"]
    release(inventory_db, "i1")
    assert needing() == []


def test_a_quarantined_node_keeps_no_reservation(inventory_db: Database) -> None:
    """Quarantine (a failed erase) lets go of the node as a release does."""
    spawn(inventory_db, "i1", "n1")
    with inventory_db.session() as session:
        instance = session.scalar(select(Instance).where(Instance.name == "i1"))
        instance.holds_node_id, instance.state = None, "error"
        instance.node.state = "quarantined"

    assert served(inventory_db) == {}


def test_the_dnsmasq_description_carries_gateway_server_and_safe_names(
    inventory_db: Database,
) -> None:
    spawn(inventory_db, "web.1", "n1")
    with inventory_db.session() as session:
        network = inventory.get_network(session, "acme", "tiny")
        dhcp = project_network(
            session, network, "eth1.100", dns_servers=[ipaddress.IPv4Address("192.0.2.53")]
        )

    assert dhcp.gateway == ipaddress.IPv4Address("10.50.0.1")
    assert dhcp.server == ipaddress.IPv4Address("10.50.0.6")
    assert [(h.mac, str(h.ip), h.hostname) for h in dhcp.hosts] == [
        ("02:00:00:00:50:01", "10.50.0.2", "web-1")
    ]
    assert dhcp.dns_servers == (ipaddress.IPv4Address("192.0.2.53"),)


class ReservationModel(RuleBasedStateMachine):
    """Any interleaving of spawns, terminates and quarantines on a /28 (13 usable host
    addresses: gateway, server and 12 for instances, 14 nodes competing for them)."""

    NODES = 14

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.db = Database(load_settings(None, f"sqlite:///{self.tmp.name}/m.db"))
        upgrade(self.db.engine)
        with self.db.session() as session:
            inventory.add_switch(session, "sw1", "fake", "192.0.2.1:830", "admin", "pw")
            inventory.create_project(session, "acme")
            inventory.create_network(session, self.db.settings, "acme", "small", "10.60.0.0/28")
            for i in range(self.NODES):
                mac = f"02:00:00:00:60:{i:02x}"
                inventory.add_node(
                    session, self.db.settings, f"n{i}", mac, "sw1", f"eth{i}", f"ipmi://m{i}"
                )
        self.holding: dict[str, str] = {}  # node -> instance holding it
        self.count = 0

    @rule(node=st.integers(0, NODES - 1))
    def spawn(self, node: int) -> None:
        name = f"n{node}"
        if name in self.holding:
            return
        self.count += 1
        instance = f"i{self.count}"
        try:
            with self.db.session() as session:
                claim(session, "acme", "small", name, instance)
        except Conflict:
            assert len(self.holding) == 12, "refused while addresses were free"
            return
        self.holding[name] = instance

    @rule(data=st.data(), quarantine=st.booleans())
    def end(self, data: st.DataObject, quarantine: bool) -> None:
        if not self.holding:
            return
        node = data.draw(st.sampled_from(sorted(self.holding)))
        with self.db.session() as session:
            instance = session.scalar(
                select(Instance).where(Instance.name == self.holding.pop(node))
            )
            instance.holds_node_id = None
            instance.state = "error" if quarantine else "deleted"

    @invariant()
    def served_are_exactly_the_holders_with_distinct_allowed_addresses(self) -> None:
        with self.db.session() as session:
            network = inventory.get_network(session, "acme", "small")
            rows = live_reservations(session, network.id)
            served = {a.nic.node.name: (i.name, a.address) for a, i in rows}
        assert {node: name for node, (name, _) in served.items()} == self.holding
        addresses = [address for _, address in served.values()]
        assert len(set(addresses)) == len(addresses)
        allowed = {str(h) for h in ipaddress.IPv4Network("10.60.0.0/28").hosts()}
        assert set(addresses) <= allowed - {"10.60.0.1", "10.60.0.14"}

    def teardown(self) -> None:
        self.db.engine.dispose()
        self.tmp.cleanup()


ReservationModel.TestCase.settings = settings(
    max_examples=15, stateful_step_count=40, deadline=None
)
test_reservation_model = ReservationModel.TestCase
