"""DHCP for metalnet's networks: one dnsmasq per network, static reservations only.

`network` validates what a server must know, `dnsmasq` renders it, `reservations`
reads it from the database, `server` runs one dnsmasq, `interfaces` names and
checks the host interfaces, and `manager` keeps every network's server running.
"""

from metalnet.dhcp.dnsmasq import (
    DnsmasqError,
    check_config,
    find_dnsmasq,
    render_dnsmasq,
    render_hosts,
)
from metalnet.dhcp.network import DhcpHost, DhcpNetwork, PxeOptions, dhcp_hostname

__all__ = [
    "DhcpHost",
    "DhcpNetwork",
    "DnsmasqError",
    "PxeOptions",
    "check_config",
    "dhcp_hostname",
    "find_dnsmasq",
    "render_dnsmasq",
    "render_hosts",
]
