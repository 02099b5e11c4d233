"""Inventory operations: projects, networks, switches, nodes. One place for the rules.

The CLI and the API call these; each validates its input, raises one MetalnetError
naming the bad value, and writes nothing when it raises (the caller's transaction
rolls back). Uniqueness that matters (MAC, port binding, VLAN) is finally enforced by
the database, so concurrent callers cannot both win.
"""

from __future__ import annotations

import ipaddress

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from metalnet import quotas
from metalnet.config import Settings
from metalnet.db.models import (
    Instance,
    IpAllocation,
    Network,
    Nic,
    Node,
    Project,
    Switch,
    SwitchPort,
)
from metalnet.errors import Conflict, InputError, NotFound
from metalnet.lifecycle import quarantine
from metalnet.lifecycle.states import LIVE, NodeState
from metalnet.validate import check_cidr, check_host_port, check_name, check_vlan, normalize_mac


def _one(session: Session, model: type, what: str, name: str) -> object:
    row = session.scalar(select(model).where(model.name == name))
    if row is None:
        raise NotFound(f"unknown {what} {name!r}")
    return row


def get_project(session: Session, name: str) -> Project:
    """The project called `name`, or NotFound."""
    return _one(session, Project, "project", name)  # type: ignore[return-value]


def get_switch(session: Session, name: str) -> Switch:
    """The switch called `name`, or NotFound."""
    return _one(session, Switch, "switch", name)  # type: ignore[return-value]


def get_node(session: Session, name: str) -> Node:
    """The node called `name`, or NotFound."""
    return _one(session, Node, "node", name)  # type: ignore[return-value]


def get_network(session: Session, project: str, name: str) -> Network:
    """The network `name` of `project`, or NotFound."""
    net = session.scalar(
        select(Network).join(Project).where(Project.name == project, Network.name == name)
    )
    if net is None:
        raise NotFound(f"unknown network {name!r} in project {project!r}")
    return net


def _flush(session: Session, conflict: str) -> None:
    """Flush, turning a unique-constraint violation into a Conflict with `conflict` as text."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(conflict) from None


# Projects ---------------------------------------------------------------------------


def create_project(session: Session, name: str) -> Project:
    """A new, empty project."""
    project = Project(name=check_name(name, "project name"))
    session.add(project)
    _flush(session, f"project {name!r} already exists")
    return project


def delete_project(session: Session, name: str) -> None:
    """Delete a project that holds no networks and no live instances."""
    project = get_project(session, name)
    live = session.scalar(
        select(func.count())
        .select_from(Instance)
        .where(Instance.project_id == project.id, Instance.state.in_(LIVE))
    )
    if live:
        raise Conflict(f"project {name!r} still has {live} instance(s); delete them first")
    if project.networks:
        nets = ", ".join(sorted(n.name for n in project.networks))
        raise Conflict(f"project {name!r} still has networks ({nets}); delete them first")
    session.execute(Instance.__table__.delete().where(Instance.project_id == project.id))
    session.delete(project)


# Networks ---------------------------------------------------------------------------


def _check_overlap(session: Session, project: Project, cidr: ipaddress.IPv4Network) -> None:
    for other in project.networks:
        if cidr.overlaps(ipaddress.IPv4Network(other.cidr)):
            raise InputError(
                f"CIDR {cidr} overlaps network {other.name!r} ({other.cidr}) of project "
                f"{project.name!r}"
            )


def _check_project_vlan(settings: Settings, vlan: int) -> int:
    if vlan == settings.service_vlan:
        raise InputError(f"VLAN {vlan} is the service (provisioning) VLAN; pick another")
    if vlan == settings.parking_vlan:
        raise InputError(f"VLAN {vlan} is the parking VLAN for unused ports; pick another")
    if vlan not in settings.project_vlan_range:
        raise InputError(f"VLAN {vlan} is outside project_vlan_range {settings.project_vlan_range}")
    return vlan


def _free_vlans(session: Session, settings: Settings) -> list[int]:
    taken = set(session.scalars(select(Network.vlan)))
    rng = settings.project_vlan_range
    return [v for v in range(rng.first, rng.last + 1) if v not in taken]


def create_network(
    session: Session,
    settings: Settings,
    project_name: str,
    name: str,
    cidr: str,
    vlan: int | str | None = None,
    gateway: str | None = None,
) -> Network:
    """A project network on a VLAN of its own; a free VLAN is taken when none is given.

    Two concurrent creates can never share a VLAN: the VLAN column is unique, and a
    create that loses the race retries with the next free VLAN.
    """
    check_name(name, "network name")
    net_cidr = check_cidr(cidr)
    project = get_project(session, project_name)
    if any(n.name == name for n in project.networks):
        raise Conflict(f"network {name!r} already exists in project {project_name!r}")
    quotas.reserve(session, settings, project, "networks")
    _check_overlap(session, project, net_cidr)
    gw = _gateway(net_cidr, gateway)
    if vlan is not None:
        wanted = _check_project_vlan(settings, check_vlan(vlan))
        return _insert_network(session, project, name, net_cidr, gw, wanted)
    for candidate in _free_vlans(session, settings):
        try:
            return _insert_network(session, project, name, net_cidr, gw, candidate)
        except Conflict:
            continue
    raise Conflict(f"no free VLAN left in project_vlan_range {settings.project_vlan_range}")


def _gateway(cidr: ipaddress.IPv4Network, gateway: str | None) -> str:
    if gateway is None:
        return str(next(cidr.hosts()))
    try:
        address = ipaddress.IPv4Address(gateway)
    except ValueError:
        raise InputError(f"invalid gateway {gateway!r}: not an IPv4 address") from None
    if address not in cidr or address in (cidr.network_address, cidr.broadcast_address):
        raise InputError(f"invalid gateway {gateway}: not a host address of {cidr}")
    return str(address)


def _insert_network(
    session: Session,
    project: Project,
    name: str,
    cidr: ipaddress.IPv4Network,
    gateway: str,
    vlan: int,
) -> Network:
    try:
        with session.begin_nested():
            network = Network(
                project_id=project.id, name=name, vlan=vlan, cidr=str(cidr), gateway=gateway
            )
            session.add(network)
    except IntegrityError:
        raise Conflict(f"VLAN {vlan} is already taken by another network") from None
    return network


def delete_network(session: Session, project_name: str, name: str) -> None:
    """Delete a network no instance uses."""
    network = get_network(session, project_name, name)
    used = session.scalar(
        select(func.count())
        .select_from(Instance)
        .where(Instance.network_id == network.id, Instance.state.in_(LIVE))
    )
    if used:
        raise Conflict(f"network {name!r} is used by {used} instance(s); delete them first")
    session.execute(IpAllocation.__table__.delete().where(IpAllocation.network_id == network.id))
    session.execute(Instance.__table__.delete().where(Instance.network_id == network.id))
    session.delete(network)


# Switches ---------------------------------------------------------------------------


def add_switch(
    session: Session,
    name: str,
    driver: str,
    address: str,
    username: str,
    password: str,
    chassis_mac: str | None = None,
) -> Switch:
    """Register a switch; the driver must be installed and the address HOST:PORT."""
    from metalnet.switches import driver_class

    check_name(name, "switch name")
    mac = None if chassis_mac is None else normalize_mac(chassis_mac)
    driver_class(driver)
    host, port = check_host_port(address, "switch address")
    if not username or any(c.isspace() for c in username):
        raise InputError(f"invalid username {username!r}: must be non-empty without spaces")
    same = session.scalar(select(Switch).where(Switch.host == host, Switch.port == port))
    if same is not None:
        raise Conflict(f"switch address {host}:{port} is already switch {same.name!r}")
    switch = Switch(
        name=name, driver=driver, host=host, port=port, username=username, password=password
    )
    session.add(switch)
    _flush(session, f"switch {name!r} (or address {host}:{port}) already exists")
    if mac is not None:
        set_chassis_mac(session, switch, mac)
    return switch


def set_chassis_mac(session: Session, switch: Switch, mac: str) -> None:
    """Record the switch's LLDP chassis MAC (unique: it names one switch)."""
    switch.chassis_mac = normalize_mac(mac)
    _flush(session, f"chassis MAC {mac!r} is already recorded on another switch")


def delete_switch(session: Session, name: str) -> None:
    """Delete a switch none of whose ports is cabled to a node."""
    switch = get_switch(session, name)
    bound = [p.interface for p in switch.ports if p.nic is not None]
    if bound:
        raise Conflict(f"switch {name!r} still has nodes on ports {', '.join(sorted(bound))}")
    for port in switch.ports:
        session.delete(port)
    session.delete(switch)


# Nodes ------------------------------------------------------------------------------


def add_node(
    session: Session,
    settings: Settings,
    name: str,
    mac: str,
    switch_name: str,
    interface: str,
    bmc_url: str,
    bmc_username: str | None = None,
    bmc_password: str | None = None,
    *,
    initial_erase: bool = True,
) -> Node:
    """Enrol a node cabled to switch_name/interface; its port is wanted in the service VLAN.

    The node is `cleaning` until its disk was erased and verified (the lifecycle's CLEAN
    plan), unless `initial_erase` is False (the admin vouches for the disk). A node
    whose MAC or BMC is under a remembered quarantine comes back quarantined.
    """
    from metalnet.power import check_bmc_url
    from metalnet.switches import check_interface

    check_name(name, "node name")
    normalized = normalize_mac(mac)
    check_bmc_url(bmc_url)
    switch = get_switch(session, switch_name)
    check_interface(switch.driver, interface)
    if session.scalar(select(Nic).where(Nic.mac == normalized)) is not None:
        raise Conflict(f"MAC {normalized} is already registered")
    port = session.scalar(
        select(SwitchPort).where(
            SwitchPort.switch_id == switch.id, SwitchPort.interface == interface
        )
    )
    if port is None:
        port = SwitchPort(switch=switch, interface=interface)
        session.add(port)
    elif port.nic is not None:
        raise Conflict(
            f"port {switch_name} {interface} is already bound to node {port.nic.node.name!r}"
        )
    same_bmc = session.scalar(select(Node).where(Node.bmc_url == bmc_url))
    if same_bmc is not None:
        raise Conflict(f"BMC {bmc_url} already belongs to node {same_bmc.name!r}")
    port.desired_vlan, port.desired_enabled = settings.service_vlan, True
    node = Node(name=name, bmc_url=bmc_url, bmc_username=bmc_username, bmc_password=bmc_password)
    node.state = NodeState.CLEANING if initial_erase else NodeState.AVAILABLE
    held = quarantine.remembered(session, [normalized], bmc_url)
    if held is not None:
        node.state, node.state_reason = NodeState.QUARANTINED, held.reason
    node.nics.append(Nic(mac=normalized, port=port))
    session.add(node)
    _flush(session, f"node {name!r} already exists (or its MAC, BMC or port was just taken)")
    return node


def delete_node(session: Session, settings: Settings, name: str) -> None:
    """Remove a node without a live instance; its port is wanted parked afterwards."""
    node = get_node(session, name)
    live = session.scalar(select(Instance).where(Instance.holds_node_id == node.id))
    if live is not None:
        raise Conflict(f"node {name!r} is used by instance {live.name!r}; delete it first")
    for nic in node.nics:
        if nic.port is not None:
            nic.port.desired_vlan, nic.port.desired_enabled = settings.parking_vlan, True
    session.execute(Instance.__table__.delete().where(Instance.node_id == node.id))
    session.delete(node)


def node_port(node: Node) -> SwitchPort:
    """The switch port of the node's (first) NIC."""
    for nic in node.nics:
        if nic.port is not None:
            return nic.port
    raise Conflict(f"node {node.name!r} has no NIC bound to a switch port")
