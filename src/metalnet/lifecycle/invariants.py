"""The isolation invariant, as a check anyone observing a switch can run; and the
rule tying a node's state to its holder's (`states.NODE_STATES`).

A node's port may carry a project VLAN only while that project's instance holds the
node and is active, or is at the step that moves the port into or out of it; and
then only as the one drift rule (`switches.drift`) calls "in sync" with that VLAN: a
clean access port in exactly that VLAN. A trunk or an extra member that carries a
project VLAN is a leak even when the instance is active. Who owns a port is read the
way the isolation guard reads it (`switches.guard`), so the guard that
admits changes and this check that judges the devices agree on every port.

What a node runs is judged too, for observers that know it from outside (the lab's
BMCs and disks): a tenant's OS reaches its own project's network or nothing. Its port
is exactly its instance's project VLAN (when that VLAN is allowed is the rule above)
or disabled; never enabled in the service VLAN (where it would be served an address
and reach the agent endpoint), the parking VLAN (shared by every parked port) or
another project's VLAN. A terminate or a failed spawn powers the node off before its
port leaves the project VLAN, and disables the port when the power-off fails
(`lifecycle.engine`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet.db.models import Instance, Network, Node
from metalnet.lifecycle.states import INTO_PROJECT, NODE_STATES, InstanceState, Step
from metalnet.switches.base import PortState
from metalnet.switches.drift import describe, in_sync
from metalnet.switches.guard import Owner, node_owner

# (state, step) pairs that may find the port in the project VLAN: a spawn from its move
# into the project VLAN on, a terminate until its move back to the service VLAN is done.
MOVING = {(InstanceState.BUILDING, s) for s in INTO_PROJECT} | {
    (InstanceState.DELETING, Step.PORT_TO_SERVICE)
}
# ... and, while a worker still runs its plan, a spawn that failed from that move on:
# it takes the port back after recording the error (`lifecycle.engine`).
TAKING_BACK = {(InstanceState.ERROR, s) for s in INTO_PROJECT}


def port_violation(session: Session, node_name: str, vlan: int | None) -> str | None:
    """`state_violation` for observers that see only a port's access VLAN (or None).

    The simulator's commit callback reports ports that way.
    """
    state = None if vlan is None else PortState("", vlan, vlans=(vlan,))
    return state_violation(session, node_name, state)


def state_violation(
    session: Session,
    node_name: str,
    actual: PortState | None,
    owner: Owner | None = None,
    running: bool = False,
) -> str | None:
    """Why `node_name`'s port must not be as `actual` says, or None if it may.

    The port is judged against `owner`, who held it when `actual` was read, or, if not
    given, against its owner now: an observer that reads the device and then the
    database must pass the owner it read around the device, or a step finished in
    between (the port moved, then the step recorded) looks like a leak. `running`:
    a worker ran the owner's plan around that read (`TAKING_BACK`).
    """
    carried = _carried(actual)
    project_vlans = set(session.scalars(select(Network.vlan).where(Network.vlan.in_(carried))))
    if not project_vlans:
        return None  # service, parking or no VLAN: never a tenant's network
    if owner is None:
        owner = node_owner(session, session.scalar(select(Node).where(Node.name == node_name)))
    device = describe(actual)
    if owner.instance is None:
        vlans = ",".join(map(str, sorted(project_vlans)))
        return f"node {node_name} carries project VLAN {vlans} ({device}) without an instance"
    vlan = owner.project_vlan
    if not in_sync(vlan, actual):
        return (
            f"node {node_name} is {device}, not exactly its instance {owner.instance}'s VLAN {vlan}"
        )
    moving = (owner.state, owner.step) in (MOVING | TAKING_BACK if running else MOVING)
    if owner.state != InstanceState.ACTIVE and not moving:
        where = f"{owner.state}/{owner.step}"
        return f"node {node_name} is in project VLAN {vlan} while {owner.instance} is {where}"
    return None


def tenant_os_violation(node_name: str, actual: PortState | None, owner: Owner) -> str | None:
    """Why a node seen running a tenant's OS must not have its port as `actual` says,
    or None if it may: the port passes no traffic, or is exactly the project VLAN of
    the instance holding the node (`state_violation` judges whether it may be there).

    `owner` held the port when `actual` was read (see `state_violation`), and the node
    must have run the tenant's OS throughout that read: a node powered off just before
    its port moved is no tenant's OS on the port's new VLAN.
    """
    if not _carried(actual):
        return None  # disabled, or no VLAN: the tenant's OS reaches no one
    if owner.instance is not None and in_sync(owner.project_vlan, actual):
        return None
    mine = (
        f"outside its instance {owner.instance}'s VLAN {owner.project_vlan}"
        if owner.instance is not None
        else "and no instance holds it"
    )
    return f"node {node_name} runs a tenant's OS on an enabled port ({describe(actual)}), {mine}"


def node_state_violations(session: Session) -> list[str]:
    """Nodes whose state their holder's state does not allow (`states.NODE_STATES`),
    read in one statement (one snapshot): a node left DEPLOYING by a failed terminate
    looks busy to an operator and to anything waiting for the lifecycle to end."""
    rows = session.execute(
        select(Node.name, Node.state, Instance.name, Instance.state)
        .outerjoin(Instance, Instance.holds_node_id == Node.id)
        .order_by(Node.id)
    )
    problems = []
    for node, state, instance, holder_state in rows:
        if state not in NODE_STATES[holder_state]:
            held = f"instance {instance} is {holder_state}" if instance else "no instance holds it"
            problems.append(f"node {node} is {state} while {held}")
    return problems


def _carried(actual: PortState | None) -> set[int]:
    """Every VLAN an enabled port passes traffic in (a disabled port passes none)."""
    if actual is None or not actual.enabled:
        return set()
    native = {actual.native_vlan} if actual.native_vlan is not None else set()
    return set(actual.vlans) | native
