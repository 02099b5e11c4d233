"""The guard's attachment rules as a model test over a real database (fake switch).

For every situation of a port (unbound, a node's with no instance, a node's held by an
instance in any lifecycle state, already attached by one owner or another) and every
VLAN kind, the guard admits an attachment exactly when the rule says so; once
attached, the port may carry the attachment's VLAN and nothing else; detached, it
rests where its remaining owner allows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet import inventory
from metalnet.config import load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.db.models import Instance, Node, PortAttachment, SwitchPort
from metalnet.switches import guard

STATES = [None, ("building", "deploy"), ("active", "active"), ("deleting", "erase")]
HOLDERS = [None, "neutron:a", "neutron:b"]
VLANS = ["service", "parking", "project", "free", "other"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, dict[str, int]]]:
    """Fake switch sw: node n1 on eth1, unbound eth2; project alpha."""
    db = Database(load_settings(None, f"sqlite:///{tmp_path_factory.mktemp('ag') / 'g.db'}"))
    upgrade(db.engine)
    with db.session() as s:
        inventory.add_switch(s, "sw", "fake", "127.0.0.1:9", "u", "p")
        inventory.add_node(s, db.settings, "n1", "52:54:00:00:00:01", "sw", "eth1", "ipmi://h")
        s.add(SwitchPort(switch=inventory.get_switch(s, "sw"), interface="eth2"))
        inventory.create_project(s, "alpha")
        inventory.create_network(s, db.settings, "alpha", "net", "10.1.0.0/24")
    vlans = {"service": db.settings.service_vlan, "parking": db.settings.parking_vlan}
    vlans |= {"project": 150, "free": 4001, "other": 4002}
    yield db, vlans
    db.engine.dispose()


def _port(s: Session, bound: bool, state: tuple[str, str] | None, holder: str | None):
    port = s.scalar(select(SwitchPort).where(SwitchPort.interface == ("eth1" if bound else "eth2")))
    if bound and state is not None:
        node = s.scalar(select(Node).where(Node.name == "n1"))
        net = inventory.get_network(s, "alpha", "net")
        s.add(
            Instance(
                name="i1", project_id=net.project_id, network_id=net.id, node_id=node.id,
                holds_node_id=node.id, image_url="http://i/i", sha256="a" * 64,
                state=state[0], step=state[1],
            )
        )  # fmt: skip
    if holder is not None:
        s.add(PortAttachment(port=port, owner=holder, vlan=4002))
    s.flush()
    return port


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    bound=st.booleans(),
    state=st.sampled_from(STATES),
    holder=st.sampled_from(HOLDERS),
    vlan=st.sampled_from(VLANS),
)
def test_attachment_admitted_exactly_by_the_rule(world, bound, state, holder, vlan) -> None:
    db, vlans = world
    session = db.sessions()
    try:
        port = _port(session, bound, state, holder)
        refusal = guard.attachment_refusal(session, db.settings, port, "neutron:a", vlans[vlan])
        held_by_instance = bound and state is not None
        expected = (
            vlan not in ("service", "parking", "project")
            and holder in (None, "neutron:a")
            and not held_by_instance
        )
        assert (refusal is None) == expected, refusal
        if holder is not None:
            owner = guard.port_owner(session, port)
            assert guard.allowed(owner, db.settings).vlans == {4002}
            resting = guard.resting_vlan(owner, db.settings)
            if not bound:
                assert resting == vlans["parking"]
            elif state is None or state[0] != "active":
                assert resting == vlans["service"]
    finally:
        session.rollback()
        session.close()
