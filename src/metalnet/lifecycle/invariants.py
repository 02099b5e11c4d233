"""The isolation invariant, as a check anyone observing a switch can run.

A node's port may sit in a project VLAN only while that project's instance holds the
node and is active, or is at the step that moves the port into or out of it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet.db.models import Instance, Network, Node
from metalnet.lifecycle.states import SPAWN, TERMINATE, InstanceState, Step

# (state, step) pairs that may find the port in the project VLAN: a spawn from its move
# into the project VLAN on, a terminate until its move back to the service VLAN is done.
MOVING = {(SPAWN.state, s) for s in SPAWN.steps[SPAWN.steps.index(Step.PORT_TO_PROJECT) :]} | {
    (TERMINATE.state, Step.PORT_TO_SERVICE)
}


def port_violation(session: Session, node_name: str, vlan: int | None) -> str | None:
    """Why `node_name`'s port must not be in `vlan` right now, or None if it may."""
    if vlan is None or session.scalar(select(Network).where(Network.vlan == vlan)) is None:
        return None  # service, parking or no VLAN: never a tenant's network
    node = session.scalar(select(Node).where(Node.name == node_name))
    inst = session.scalar(select(Instance).where(Instance.holds_node_id == node.id))
    if inst is None:
        return f"node {node_name} is in project VLAN {vlan} without an instance"
    if inst.network.vlan != vlan:
        return (
            f"node {node_name} is in VLAN {vlan}, not its instance {inst.name}'s "
            f"VLAN {inst.network.vlan}"
        )
    moving = (inst.state, inst.step) in MOVING
    if inst.state != InstanceState.ACTIVE and not moving:
        where = f"{inst.state}/{inst.step}"
        return f"node {node_name} is in project VLAN {vlan} while {inst.name} is {where}"
    return None
