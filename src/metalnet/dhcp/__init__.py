"""DHCP for metalnet's networks: one dnsmasq per network, static reservations only."""

from metalnet.dhcp.dnsmasq import DnsmasqError, check_config, find_dnsmasq, render_dnsmasq
from metalnet.dhcp.network import DhcpHost, DhcpNetwork, PxeOptions

__all__ = [
    "DhcpHost",
    "DhcpNetwork",
    "DnsmasqError",
    "PxeOptions",
    "check_config",
    "find_dnsmasq",
    "render_dnsmasq",
]
