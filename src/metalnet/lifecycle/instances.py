"""Creating and deleting instances: validation, node claim, addresses.

Nothing here touches a device; it records intent (an instance in `building` or
`deleting`) that the lifecycle worker then carries out step by step.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from metalnet import inventory, quotas
from metalnet.config import Settings
from metalnet.db.models import Instance, InstanceEvent, Node, Project
from metalnet.errors import Conflict, NotFound
from metalnet.lifecycle import quarantine
from metalnet.lifecycle.states import LIVE, TERMINATE, InstanceState, NodeState, Step
from metalnet.validate import check_name, check_sha256


def get_instance(session: Session, name: str, project: str | None = None) -> Instance:
    """The live instance called `name` (in `project`, when given), else the newest one of
    that name, else NotFound. Names are unique per project: without a project, a name
    live in two projects is ambiguous rather than whichever comes first."""
    query = select(Instance).where(Instance.name == name).order_by(Instance.id.desc())
    if project is not None:
        query = query.join(Project, Instance.project_id == Project.id).where(
            Project.name == project
        )
    rows = session.scalars(query).all()
    if not rows:
        raise NotFound(f"unknown instance {name!r}")
    live = [r for r in rows if r.state in LIVE]
    if len({r.project_id for r in live}) > 1:
        raise Conflict(f"instance name {name!r} is used in several projects; name the project")
    return live[0] if live else rows[0]


def _claim(session: Session, node: Node, **fields: object) -> Instance:
    """An instance holding `node`; the unique holds_node_id makes a double claim fail."""
    if node.state != NodeState.AVAILABLE:
        reason = f" ({node.state_reason})" if node.state_reason else ""
        raise Conflict(f"node {node.name!r} is {node.state}{reason}, not available")
    for nic in node.nics:
        if nic.port is not None and nic.port.attachment is not None:
            owner = nic.port.attachment.owner
            raise Conflict(f"node {node.name!r} has its port attached to {owner}, not available")
    try:
        with session.begin_nested():
            instance = Instance(node_id=node.id, holds_node_id=node.id, **fields)
            session.add(instance)
    except IntegrityError:
        # the node was claimed, or the name taken in the project, by a concurrent create
        raise Conflict(
            f"node {node.name!r} or instance name {fields['name']!r} was just taken"
        ) from None
    node.state = NodeState.DEPLOYING
    return instance


def create_instance(
    session: Session,
    name: str,
    project: str,
    network: str,
    node: str | None,
    image_url: str,
    sha256: str,
    *,
    settings: Settings,
) -> Instance:
    """Record a spawn of `image_url` on `node` (or any available node) for `project`.

    The image URL must pass the configured image policy (`settings.image_policy`), and
    the project must be within its instance quota (default `settings.quota_instances`).
    """
    from metalnet.dhcp.reservations import reserve

    check_name(name, "instance name")
    settings.image_policy.check(image_url)
    digest = check_sha256(sha256)
    net = inventory.get_network(session, project, network)
    live_name = select(Instance).where(
        Instance.project_id == net.project_id, Instance.name == name, Instance.state.in_(LIVE)
    )
    if session.scalar(live_name) is not None:
        raise Conflict(f"instance {name!r} already exists in project {project!r}")
    quotas.reserve(session, settings, net.project, "instances")
    fields = {
        "name": name,
        "project_id": net.project_id,
        "network_id": net.id,
        "image_url": image_url,
        "sha256": digest,
    }
    if node:
        chosen = inventory.get_node(session, node)
        instance = _claim(session, chosen, **fields)
    else:
        available = session.scalars(
            select(Node).where(Node.state == NodeState.AVAILABLE).order_by(Node.id)
        ).all()
        for chosen in available:
            try:
                instance = _claim(session, chosen, **fields)
                break
            except Conflict:
                continue
        else:
            raise Conflict("no available node left (all are in use or quarantined)")
    reserve(session, net, chosen)
    session.add(InstanceEvent(instance=instance, step=Step.QUEUED, message="spawn requested"))
    return instance


def delete_instance(session: Session, name: str, project: str | None = None) -> Instance:
    """Record a terminate; the worker interrupts a spawn in progress and tears down."""
    instance = get_instance(session, name, project)
    if instance.state not in LIVE:
        raise Conflict(f"instance {name!r} is already {instance.state}")
    if instance.state == InstanceState.DELETING:
        return instance
    instance.state, instance.step = InstanceState.DELETING, TERMINATE.steps[0]
    instance.error = None
    session.add(InstanceEvent(instance=instance, step=Step.QUEUED, message="terminate requested"))
    return instance


def clear_node(session: Session, name: str) -> Node:
    """An operator returns a quarantined node to service (after fixing its disk).

    The node is not offered yet: it is CLEANING, so the clean plan erases and verifies
    its disk first, as for a newly enrolled node; a disk put back with a tenant's data
    on it never reaches the next tenant.
    """
    node = inventory.get_node(session, name)
    if node.state != NodeState.QUARANTINED:
        raise Conflict(f"node {name!r} is {node.state}, not quarantined")
    node.state, node.state_reason = NodeState.CLEANING, None
    quarantine.forget(session, node)
    return node
