"""Project networks' DHCP reservations as the database holds them.

The rule, kept here and nowhere else: a reservation (an `ip_allocations` row, MAC ->
address) counts exactly while a live instance on that network holds the NIC's node.
Once the instance released its node (terminated, or its node quarantined) the
reservation is no longer served, and its address is back in the pool: the next
`reserve` on that network drops such rows before it picks an address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from sqlalchemy import and_, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, contains_eager

from metalnet.db.models import Instance, IpAllocation, Network, Nic, Node
from metalnet.dhcp.network import DhcpHost, DhcpNetwork, dhcp_hostnames
from metalnet.errors import Conflict
from metalnet.lifecycle.states import LIVE


def _held() -> object:
    """Join condition: the allocation's NIC belongs to a node a live instance on the
    allocation's network holds."""
    return and_(
        Instance.holds_node_id == Nic.node_id,
        Instance.network_id == IpAllocation.network_id,
        Instance.state.in_(LIVE),
    )


def live_reservations(session: Session, network_id: int) -> list[tuple[IpAllocation, Instance]]:
    """The reservations served on a network, with the instance each belongs to."""
    rows = session.execute(
        select(IpAllocation, Instance)
        .join(Nic, Nic.id == IpAllocation.nic_id)
        .join(Instance, _held())
        .options(contains_eager(IpAllocation.nic))  # one query, MACs included
        .where(IpAllocation.network_id == network_id)
        .order_by(IpAllocation.address)
    )
    return [(allocation, instance) for allocation, instance in rows]


def networks_needing_dhcp(session: Session) -> list[Network]:
    """Networks with at least one live reservation: those whose dnsmasq must run."""
    return list(
        session.scalars(
            select(Network)
            .where(
                select(IpAllocation.id)
                .join(Nic, Nic.id == IpAllocation.nic_id)
                .join(Instance, _held())
                .where(IpAllocation.network_id == Network.id)
                .exists()
            )
            .order_by(Network.vlan)
        )
    )


def server_address(network: Network) -> ipaddress.IPv4Address:
    """The network's DHCP server address: its subnet's last host address."""
    return ipaddress.IPv4Network(network.cidr)[-2]


def reserve(session: Session, network: Network, node: Node) -> str:
    """Reserve an address on `network` for `node`'s first NIC (its instance must exist).

    Released reservations are dropped first, so their addresses are free again; the
    gateway and the DHCP server's own address are never handed out. Two concurrent
    reservations of one address are kept apart by the (network, address) constraint.
    """
    nic = node.nics[0]
    _drop_released(session, network)
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
    taken |= {network.gateway or "", str(server_address(network))}
    for host in ipaddress.IPv4Network(network.cidr).hosts():
        if str(host) in taken:
            continue
        try:
            with session.begin_nested():
                session.add(IpAllocation(network_id=network.id, nic_id=nic.id, address=str(host)))
        except IntegrityError:
            continue  # another request took it a moment ago
        return str(host)
    raise Conflict(f"network {network.name!r} ({network.cidr}) has no free address left")


def _drop_released(session: Session, network: Network) -> None:
    served = {allocation.id for allocation, _ in live_reservations(session, network.id)}
    session.execute(
        delete(IpAllocation).where(
            IpAllocation.network_id == network.id, IpAllocation.id.not_in(served)
        )
    )


def project_network(
    session: Session,
    network: Network,
    interface: str,
    server: str | None = None,
    lease_seconds: int = 3600,
    dns_servers: Sequence[ipaddress.IPv4Address] = (),
) -> DhcpNetwork:
    """`network`'s dnsmasq description: its live reservations, named after their
    instances (made DHCP-safe), the gateway from the network, DNS from the caller."""
    reservations = live_reservations(session, network.id)
    names = dhcp_hostnames([(instance.name, a.nic.mac) for a, instance in reservations])
    hosts = [
        DhcpHost(allocation.nic.mac, ipaddress.IPv4Address(allocation.address), name)
        for (allocation, _), name in zip(reservations, names, strict=True)
    ]
    return DhcpNetwork(
        f"vlan{network.vlan}",
        network.vlan,
        ipaddress.IPv4Network(network.cidr),
        ipaddress.IPv4Address(server) if server else server_address(network),
        interface,
        hosts=hosts,
        gateway=ipaddress.IPv4Address(network.gateway) if network.gateway else None,
        lease_seconds=lease_seconds,
        dns_servers=dns_servers,
    )
