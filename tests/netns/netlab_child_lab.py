"""A small lab, also runnable as its own process for the tests that signal or kill it.

Run as a script it builds the lab, prints `PREFIX PID...` (the processes to watch)
and sleeps until it is signalled, so a test can SIGTERM or SIGKILL the lab's owner.
"""

from __future__ import annotations

import ipaddress
import time

from metalnet.dhcp import DhcpHost, DhcpNetwork
from metalnet.sim.lab.netns import NetLab

VLAN = 100
MAC = "02:00:00:00:0c:01"


def build_small_lab(lab: NetLab) -> list[int]:
    """A VLAN, a dnsmasq and a node on it running a process; the pids to watch."""
    cidr = ipaddress.IPv4Network("10.101.0.0/24")
    hosts = [DhcpHost(MAC, cidr[11], "small")]
    server = lab.add_dhcp_server(DhcpNetwork("small", VLAN, cidr, cidr[2], "eth0", hosts=hosts))
    node = lab.add_node("small", MAC)
    lab.set_port_vlan(node, VLAN)
    sleeper = lab.run_in(node, ["sleep", "60"])
    return [server.dnsmasq.pid, sleeper.pid]


if __name__ == "__main__":
    with NetLab() as running:
        print(running.prefix, *build_small_lab(running), flush=True)
        time.sleep(60)
