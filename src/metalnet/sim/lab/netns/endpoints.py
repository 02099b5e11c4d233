"""The things in the lab that own an address: nodes, DHCP servers, host endpoints.

Each lives in its own network namespace with one NIC; `port` is the veth end left
in the root namespace, which the lab plugs into a VLAN's bridge. Identity matters
(a node's VLAN changes), so these compare by identity, not by value.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from metalnet.dhcp.server import DnsmasqServer


@dataclass(eq=False)
class Endpoint:
    """A namespace with one NIC whose outside end (`port`) is a switch port."""

    name: str
    netns: str
    nic: str
    port: str


@dataclass(eq=False)
class NodeEndpoint(Endpoint):
    """A bare-metal node: its NIC carries the MAC the database knows it by.

    `vlan` is the VLAN whose bridge the port hangs off, None when detached.
    """

    mac: str
    vlan: int | None = None


@dataclass(eq=False)
class TapPort:
    """A virtual machine's switch port: a tap in the root namespace, no namespace.

    QEMU attaches the machine's NIC (`mac`) to the tap; the lab moves the tap between
    VLAN bridges exactly as it moves a namespace node's veth. `vlan` as for nodes.
    """

    name: str
    port: str
    mac: str
    vlan: int | None = None


@dataclass(eq=False)
class HostEndpoint(Endpoint):
    """A fixed address on one VLAN (e.g. the controller's agent endpoint)."""

    vlan: int
    address: ipaddress.IPv4Interface


@dataclass(eq=False)
class DhcpServer(HostEndpoint):
    """A real dnsmasq, run by `metalnet.dhcp.server`, in this endpoint's namespace."""

    dnsmasq: DnsmasqServer
