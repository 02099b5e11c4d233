"""Creating and deleting instances: validation, node claim, addresses.

Nothing here touches a device; it records intent (an instance in `building` or
`deleting`) that the lifecycle worker then carries out step by step.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from metalnet import inventory, quotas
from metalnet.config import Settings
from metalnet.db.models import Instance, InstanceEvent, IpAllocation, Network, Node
from metalnet.errors import Conflict, InputError, NotFound
from metalnet.validate import check_name, check_sha256

LIVE = inventory.LIVE_INSTANCE_STATES


def check_image_url(url: str) -> str:
    """An http(s) URL without spaces or control characters."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() or not c.isprintable() for c in url)
        or len(url) > 1024
    ):
        raise InputError(f"invalid image URL {url!r}: expected http(s)://HOST/PATH")
    return url


def get_instance(session: Session, name: str) -> Instance:
    """The live instance called `name`, else the newest one of that name, else NotFound."""
    rows = session.scalars(
        select(Instance).where(Instance.name == name).order_by(Instance.id.desc())
    ).all()
    if not rows:
        raise NotFound(f"unknown instance {name!r}")
    live = [r for r in rows if r.state in LIVE]
    return live[0] if live else rows[0]


def _claim(session: Session, node: Node, **fields: object) -> Instance:
    """An instance holding `node`; the unique holds_node_id makes a double claim fail."""
    if node.state != "available":
        reason = f" ({node.state_reason})" if node.state_reason else ""
        raise Conflict(f"node {node.name!r} is {node.state}{reason}, not available")
    try:
        with session.begin_nested():
            instance = Instance(node_id=node.id, holds_node_id=node.id, **fields)
            session.add(instance)
    except IntegrityError:
        raise Conflict(f"node {node.name!r} is already in use") from None
    node.state = "deploying"
    return instance


def _allocate_address(session: Session, network: Network, node: Node) -> str:
    nic = node.nics[0]
    existing = session.scalar(
        select(IpAllocation).where(
            IpAllocation.network_id == network.id, IpAllocation.nic_id == nic.id
        )
    )
    if existing is not None:
        return existing.address
    taken = set(
        session.scalars(select(IpAllocation.address).where(IpAllocation.network_id == network.id))
    )
    taken.add(network.gateway or "")
    for host in ipaddress.IPv4Network(network.cidr).hosts():
        if str(host) not in taken:
            session.add(IpAllocation(network_id=network.id, nic_id=nic.id, address=str(host)))
            return str(host)
    raise Conflict(f"network {network.name!r} ({network.cidr}) has no free address left")


def create_instance(
    session: Session,
    name: str,
    project: str,
    network: str,
    node: str | None,
    image_url: str,
    sha256: str,
    settings: Settings | None = None,
) -> Instance:
    """Record a spawn of `image_url` on `node` (or any available node) for `project`,
    within the project's instance quota (`settings` holds the default quota)."""
    check_name(name, "instance name")
    check_image_url(image_url)
    digest = check_sha256(sha256)
    net = inventory.get_network(session, project, network)
    if session.scalar(select(Instance).where(Instance.name == name, Instance.state.in_(LIVE))):
        raise Conflict(f"instance {name!r} already exists")
    quotas.reserve(session, settings or Settings(), net.project, "instances")
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
            select(Node).where(Node.state == "available").order_by(Node.id)
        ).all()
        for chosen in available:
            try:
                instance = _claim(session, chosen, **fields)
                break
            except Conflict:
                continue
        else:
            raise Conflict("no available node left (all are in use or quarantined)")
    _allocate_address(session, net, chosen)
    session.add(InstanceEvent(instance=instance, step="queued", message="spawn requested"))
    return instance


def delete_instance(session: Session, name: str) -> Instance:
    """Record a terminate; the worker interrupts a spawn in progress and tears down."""
    instance = get_instance(session, name)
    if instance.state not in LIVE:
        raise Conflict(f"instance {name!r} is already {instance.state}")
    if instance.state == "deleting":
        return instance
    instance.state, instance.step, instance.error = "deleting", "port_to_service", None
    session.add(InstanceEvent(instance=instance, step="queued", message="terminate requested"))
    return instance


def clear_node(session: Session, name: str) -> Node:
    """An operator returns a quarantined node to service (after fixing its disk)."""
    node = inventory.get_node(session, name)
    if node.state != "quarantined":
        raise Conflict(f"node {name!r} is {node.state}, not quarantined")
    node.state, node.state_reason = "available", None
    return node
