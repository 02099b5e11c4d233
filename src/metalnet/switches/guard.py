"""The isolation guard: the one check every port change passes before it is recorded.

The switch service calls `check` inside its submit path, in the same database
transaction that would write the desired VLAN and before anything is queued, for
every entry point: the lifecycle, `switch port-set`, `switch apply`, the reconciler's
corrections and any future owner of ports (an ML2 driver). A refused change raises
before the desired state is written, so a refusal can never overwrite it.

The rule, from DESIGN.md's safety invariants and the lifecycle (lifecycle/engine.py):

- A port no node is bound to is parked: the parking VLAN only, never a project VLAN,
  never the service VLAN (nothing of ours is behind it).
- A port whose node no instance holds (available, quarantined, in error) is in the
  service VLAN only: an idle node is erased or waiting, and never in a project VLAN.
- A port whose node an instance holds follows that instance's lifecycle:
  building, steps before `port_to_project`: the service VLAN only (ramdisk and agent
  traffic never touch a project VLAN); building at `port_to_project` or later
  (`lifecycle.states.INTO_PROJECT`): the service VLAN or the instance's project VLAN
  (the step's move, or the undo of a failed one);
  active: the instance's project VLAN only (the tenant's OS never runs on the service
  VLAN); deleting or error: the service VLAN only (a terminate powers the node off,
  then takes the port back).

A change that disables a port is judged by the VLAN it keeps, as an enabled one:
disabling takes traffic away and never needs more permission than that VLAN (the
lifecycle disables a port in the service VLAN when its node may still run a tenant's
OS). Enabling is not a permission of its own either: what decides is the VLAN. A move
that is not the lifecycle's own (`switch port-set`, `switch apply`) out of the project
VLAN while the node may run its tenant's OS (`may_run_tenant`) is recorded disabled:
only the lifecycle, which knows the node is off, enables such a port.

Lifecycle moves pass by construction: the engine records a step in the database
before the step acts, so the step the guard reads is the one making the move. A
terminate that lands while a spawn moves a port into the project VLAN changes the
instance to `deleting` first, so the spawn's stale move is refused.

A port may instead be owned by a system outside metalnet (an attachment, e.g. a
Neutron port bound through the ML2 driver). An attachment is an owner kind of its own
and wins over the rules above: an attached port carries its attachment's VLAN only.
Making an attachment has rules of its own (`attachment_refusal`): one owner per port,
never a port of a node a metalnet instance holds, never the service or parking VLAN
(those belong to metalnet's lifecycle), never a VLAN of metalnet's project range (a
metalnet tenant's network is, or may later be, there: sharing it would join the two).
Removing an attachment returns the port to the VLAN its remaining owner allows
(`resting_vlan`): parked when no node is bound.

An administrator may override a refusal with an explicit reason (`--force --reason`);
the service writes every override to the audit log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from metalnet.config import Settings
from metalnet.db.models import Instance, Nic, Node, PortAttachment, SwitchPort
from metalnet.errors import Conflict
from metalnet.lifecycle.states import INTO_PROJECT, InstanceState, Step


@dataclass(frozen=True)
class Override:
    """An administrator's explicit decision to make a change the guard refuses."""

    actor: str
    reason: str


@dataclass(frozen=True)
class Owner:
    """Who a port belongs to right now, as far as isolation is concerned."""

    node: str | None = None
    instance: str | None = None
    project: str | None = None
    state: str | None = None
    step: str | None = None
    project_vlan: int | None = None
    attachment: str | None = None
    attachment_vlan: int | None = None

    def __str__(self) -> str:
        if self.attachment is not None:
            return f"attached to {self.attachment} in VLAN {self.attachment_vlan}"
        if self.node is None:
            return "no node bound"
        if self.instance is None:
            return f"node {self.node}, no instance"
        where = self.state if self.step == self.state else f"{self.state} at {self.step}"
        return f"node {self.node}, instance {self.instance} of project {self.project}, {where}"


@dataclass(frozen=True)
class Allowed:
    """The VLANs a port may be in now, and the rule that says so (for refusals)."""

    vlans: frozenset[int]
    rule: str


@dataclass(frozen=True)
class Refusal:
    """One change the guard refused."""

    switch: str
    interface: str
    vlan: int
    owner: Owner
    rule: str

    def __str__(self) -> str:
        return (
            f"switch {self.switch} port {self.interface} ({self.owner}) may not go to "
            f"VLAN {self.vlan}: {self.rule}"
        )


class PortRefused(Conflict):
    """One or more port changes would break tenant isolation; nothing was changed."""

    def __init__(self, refusals: Sequence[Refusal], hint: str = "") -> None:
        self.refusals = tuple(refusals)
        more = len(self.refusals) - 1
        tail = f" (and {more} more refused change{'s' if more > 1 else ''})" if more else ""
        super().__init__(f"refused: {self.refusals[0]}{tail}" + (f"; {hint}" if hint else ""))


def lock_ports(session: Session, port_ids: Sequence[int]) -> None:
    """Lock the ports' rows (on PostgreSQL) in the one order every writer uses.

    Port changes lock the ports, then the instances holding their nodes; in one
    transaction, by ascending id. A writer that took an instance first (a failed
    spawn taking its port back) and a queue's lane that took the port first would
    each wait for the other's row, and PostgreSQL aborts one of them.
    """
    session.execute(
        select(SwitchPort.id)
        .where(SwitchPort.id.in_(sorted(port_ids)))
        .order_by(SwitchPort.id)
        .with_for_update()
    )


def owners(session: Session, ports: Sequence[SwitchPort]) -> dict[int, Owner]:
    """port id -> its owner, for many ports in two queries (ports not yet stored: unbound).

    The ports' rows, then the holding instances' rows, are read FOR UPDATE (on
    PostgreSQL; `lock_ports` says why in that order), so a terminate or a lifecycle
    step cannot change them between this check and the caller's commit.
    """
    ids = [p.id for p in ports if p.id is not None]
    found: dict[int, Owner] = {}
    if not ids:
        return found
    lock_ports(session, ids)
    rows = session.execute(
        select(SwitchPort.id, Node.id, Node.name)
        .join(Nic, Nic.port_id == SwitchPort.id)
        .join(Node, Node.id == Nic.node_id)
        .where(SwitchPort.id.in_(ids))
    ).all()
    holders = {
        inst.holds_node_id: inst
        for inst in session.scalars(
            select(Instance)
            .where(Instance.holds_node_id.in_([node_id for _p, node_id, _n in rows]))
            .options(joinedload(Instance.project), joinedload(Instance.network))
            .with_for_update(of=Instance)
        ).unique()
    }
    for port_id, node_id, node_name in rows:
        found[port_id] = _owner(node_name, holders.get(node_id))
    for port_id, owner, vlan in session.execute(
        select(PortAttachment.port_id, PortAttachment.owner, PortAttachment.vlan).where(
            PortAttachment.port_id.in_(ids)
        )
    ):
        held = found.get(port_id, Owner())
        found[port_id] = replace(held, attachment=owner, attachment_vlan=vlan)
    return found


def node_owner(session: Session, node: Node) -> Owner:
    """The instance holding `node`, if any (read without locking, for observers)."""
    inst = session.scalar(select(Instance).where(Instance.holds_node_id == node.id))
    return _owner(node.name, inst)


def _owner(node: str, inst: Instance | None) -> Owner:
    if inst is None:
        return Owner(node)
    return Owner(node, inst.name, inst.project.name, inst.state, inst.step, inst.network.vlan)


def allowed(owner: Owner, settings: Settings) -> Allowed:
    """The rule of the module docstring, for one port's owner."""
    service, parking = settings.service_vlan, settings.parking_vlan
    if owner.attachment is not None:
        vlan = owner.attachment_vlan
        return Allowed(
            frozenset({vlan}), f"a port attached to {owner.attachment} carries only VLAN {vlan}"
        )
    if owner.node is None:
        return Allowed(frozenset({parking}), f"an unbound port is only parked (VLAN {parking})")
    if owner.instance is None:
        return Allowed(
            frozenset({service}), f"a node no instance holds stays in the service VLAN {service}"
        )
    project = owner.project_vlan
    if owner.state == InstanceState.ACTIVE:
        return Allowed(
            frozenset({project}), f"an active instance's port is only in its project VLAN {project}"
        )
    if owner.state == InstanceState.BUILDING and owner.step in INTO_PROJECT:
        return Allowed(
            frozenset({service, project}),
            f"moving to its project, only the service VLAN {service} or project VLAN {project}",
        )
    return Allowed(
        frozenset({service}),
        f"while its instance is {owner.state}, the port is only in the service VLAN {service}",
    )


def may_run_tenant(owner: Owner) -> bool:
    """Whether the node behind a port may run its tenant's OS now, as far as its owner
    says: its instance moves into the project (the image may boot) or leaves it before
    the node is off (a terminate's first step powers off, then moves the port). A move
    to the service VLAN that is not the lifecycle's own then leaves the port disabled:
    an administrator's `switch port-set` must not put a running tenant's OS on the
    provisioning network (the lifecycle passes `enabled` itself, knowing the power)."""
    if owner.instance is None:
        return False
    if owner.state == InstanceState.BUILDING:
        return owner.step in INTO_PROJECT
    return owner.state == InstanceState.DELETING and owner.step == Step.PORT_TO_SERVICE


def check_all(
    session: Session,
    settings: Settings,
    changes: Sequence[tuple[SwitchPort, int]],
    found: dict[int, Owner] | None = None,
) -> list[Refusal]:
    """Every change of (port, VLAN) the rule refuses now; [] when all may be made.
    `found`: the ports' owners, if the caller read them already (`owners`)."""
    if found is None:
        found = owners(session, [port for port, _vlan in changes])
    refused = []
    for port, vlan in changes:
        owner = found.get(port.id, Owner()) if port.id is not None else Owner()
        rule = allowed(owner, settings)
        if vlan not in rule.vlans:
            refused.append(Refusal(port.switch.name, port.interface, vlan, owner, rule.rule))
    return refused


def check(session: Session, settings: Settings, port: SwitchPort, vlan: int) -> Refusal | None:
    """Why `port` may not go to `vlan` now, or None when it may."""
    refused = check_all(session, settings, [(port, vlan)])
    return refused[0] if refused else None


def port_owner(session: Session, port: SwitchPort) -> Owner:
    """The owner of one port (unbound when not stored yet)."""
    return owners(session, [port]).get(port.id, Owner()) if port.id is not None else Owner()


def attachment_refusal(
    session: Session, settings: Settings, port: SwitchPort, owner: str, vlan: int
) -> Refusal | None:
    """Why `owner` may not attach `port` in `vlan` now, or None when it may."""
    current = port_owner(session, port)

    def refuse(rule: str) -> Refusal:
        return Refusal(port.switch.name, port.interface, vlan, current, rule)

    if vlan in (settings.service_vlan, settings.parking_vlan):
        return refuse(
            f"the service VLAN {settings.service_vlan} and the parking VLAN "
            f"{settings.parking_vlan} are metalnet's, never an attachment's"
        )
    if vlan in settings.project_vlan_range:
        return refuse(
            f"metalnet's project VLANs {settings.project_vlan_range} are never an attachment's"
        )
    if current.attachment is not None and current.attachment != owner:
        return refuse(f"one owner per port: it is attached to {current.attachment}")
    if current.instance is not None:
        return refuse(f"its node {current.node} is held by metalnet instance {current.instance}")
    return None


def resting_vlan(owner: Owner, settings: Settings) -> int:
    """Where a port goes when its attachment ends: parked, or the service VLAN of its node."""
    rule = allowed(replace(owner, attachment=None, attachment_vlan=None), settings)
    return settings.service_vlan if settings.service_vlan in rule.vlans else min(rule.vlans)
