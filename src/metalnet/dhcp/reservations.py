"""A project network's DHCP service as the database describes it.

The reservations are the `ip_allocations` the lifecycle makes when it spawns an
instance (MAC from the NIC, not random), so a node gets the same address every boot.
"""

from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet.db.models import IpAllocation, Network
from metalnet.dhcp.network import DhcpHost, DhcpNetwork


def project_network(
    session: Session,
    network: Network,
    interface: str,
    server: str | None = None,
    lease_seconds: int = 3600,
) -> DhcpNetwork:
    """`network`'s dnsmasq description; the server defaults to the subnet's last host."""
    cidr = ipaddress.IPv4Network(network.cidr)
    allocations = session.scalars(
        select(IpAllocation)
        .where(IpAllocation.network_id == network.id)
        .order_by(IpAllocation.address)
    )
    hosts = [DhcpHost(a.nic.mac, a.address, a.nic.node.name) for a in allocations]
    return DhcpNetwork(
        f"vlan{network.vlan}",
        network.vlan,
        cidr,
        ipaddress.IPv4Address(server) if server else cidr[-2],
        interface,
        hosts=hosts,
        gateway=ipaddress.IPv4Address(network.gateway) if network.gateway else None,
        lease_seconds=lease_seconds,
    )
