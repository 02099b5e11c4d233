"""A DHCP host and its clients in network namespaces, plus a database that drives them.

`DhcpWorld` builds, under a random prefix:
- the DHCP host: namespace `P-h` holding one interface per VLAN, named by the
  template `vl{vlan}` (what an operator's `eth1.{vlan}` would be), each a veth whose
  other end sits on that VLAN's bridge in the root namespace;
- clients: namespaces with one NIC carrying a chosen MAC, on a VLAN's bridge;
- a migrated SQLite database with one fake switch and nodes, for projects, networks
  and instances made through metalnet's own functions.
The DHCP client is busybox udhcpc with a hook that prints the lease and router.
Everything is removed on `close()`, checked by `leftovers()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet import inventory
from metalnet.config import load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.db.models import Instance, IpAllocation, Nic, Project
from metalnet.dhcp.interfaces import DhcpInterfaces, program
from metalnet.dhcp.manager import DhcpManager
from metalnet.dhcp.reservations import reserve

SHA = "0" * 64
TEMPLATE = "vl{vlan}"
HOOK = """#!/bin/sh
# udhcpc hook: configure only the client's NIC (namespaces share /etc) and print the lease.
case "$1" in
    deconfig) ip -4 addr flush dev "$interface"; ip link set dev "$interface" up ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/$mask" dev "$interface"
        echo "lease $ip router=${router%% *}"
        ;;
esac
exit 0
"""


def why_unavailable() -> str | None:
    """Why these tests cannot run here, or None."""
    import os

    if os.geteuid() != 0:
        return "needs root: network namespaces (CI runs these as root)"
    path = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
    needed = {"ip": "iproute2", "dnsmasq": "dnsmasq-base", "busybox": "busybox"}
    needed["dhcp_release"] = "dnsmasq-utils"
    missing = [pkg for tool, pkg in needed.items() if not shutil.which(tool, path=path)]
    return f"missing packages: apt-get install {' '.join(missing)}" if missing else None


def ip(*args: str) -> str:
    result = subprocess.run(
        [program("ip"), *args], capture_output=True, text=True, timeout=10, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@dataclasses.dataclass(frozen=True)
class Lease:
    address: ipaddress.IPv4Address
    router: str


@dataclasses.dataclass(frozen=True)
class Client:
    netns: str
    mac: str


def claim(session: Session, project: str, network: str, node: str, instance: str) -> str:
    """Record an instance holding `node`, with its reservation: what
    `lifecycle.instances.create_instance` records (its claim, then `reserve`), without
    the checks that are not DHCP's (image policy, node state); the address reserved."""
    net = inventory.get_network(session, project, network)
    held = inventory.get_node(session, node)
    session.add(
        Instance(
            name=instance, project_id=net.project_id, network_id=net.id, node_id=held.id,
            holds_node_id=held.id, image_url="http://images/x.img", sha256=SHA,
        )
    )  # fmt: skip
    held.state = "deploying"
    session.flush()
    return reserve(session, net, held)


class DhcpWorld:
    def __init__(self, tmp: Path) -> None:
        self.prefix = f"mdh{secrets.token_hex(2)}"
        self.tmp = tmp
        self.host_netns = f"{self.prefix}-h"
        self._bridges: dict[int, str] = {}
        self._clients = 0
        ip("netns", "add", self.host_netns)
        ip("-n", self.host_netns, "link", "set", "lo", "up")
        self.hook = tmp / "udhcpc-hook.sh"
        self.hook.write_text(HOOK)
        self.hook.chmod(0o755)
        # dnsmasq reads its hosts file as an unprivileged user: the directory must be
        # reachable for it, which pytest's private tmp_path is not.
        self.state_dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.state_dir.chmod(0o755)
        settings = load_settings(None, f"sqlite:///{tmp / 'metalnet.db'}")
        self.settings = dataclasses.replace(
            settings, dhcp_interface=TEMPLATE, dhcp_netns=self.host_netns,
            dhcp_state_dir=str(self.state_dir), dhcp_dns_servers=("192.0.2.53",),
        )  # fmt: skip
        self.db = Database(self.settings)
        upgrade(self.db.engine)
        with self.db.session() as session:
            inventory.add_switch(session, "sw1", "fake", "192.0.2.1:830", "admin", "secret")
        self.managers: list[DhcpManager] = []

    # The DHCP host's VLAN interfaces and the clients --------------------------------------

    def vlan_interface(self, vlan: int) -> str:
        """Give the DHCP host its interface for `vlan` (as an operator would)."""
        bridge = self._bridge(vlan)
        outside = f"{self.prefix}h{vlan}"
        inside = TEMPLATE.format(vlan=vlan)
        ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", self.host_netns)
        ip("link", "set", outside, "master", bridge, "up")
        ip("-n", self.host_netns, "link", "set", inside, "up")
        return inside

    def client(self, vlan: int, mac: str) -> Client:
        """A machine with NIC `mac` cabled to VLAN `vlan`."""
        self._clients += 1
        netns = f"{self.prefix}-c{self._clients}"
        outside = f"{self.prefix}c{self._clients}"
        ip("netns", "add", netns)
        ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("-n", netns, "link", "set", "eth0", "address", mac, "up")
        ip("link", "set", outside, "master", self._bridge(vlan), "up")
        return Client(netns, mac)

    def dhcp(self, client: Client, tries: int = 3) -> Lease | None:
        """A DHCP exchange from scratch (one DISCOVER a second, `tries` of them)."""
        argv = [program("ip"), "netns", "exec", client.netns, program("busybox"), "udhcpc"]
        argv += ["-i", "eth0", "-f", "-q", "-n", "-t", str(tries), "-T", "1", "-s", str(self.hook)]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=tries + 5, check=False
        )
        for line in result.stdout.splitlines():
            if line.startswith("lease "):
                address, router = line.split()[1:3]
                return Lease(ipaddress.IPv4Address(address), router.removeprefix("router="))
        return None

    def _bridge(self, vlan: int) -> str:
        if vlan not in self._bridges:
            bridge = f"{self.prefix}b{vlan}"
            ip("link", "add", bridge, "type", "bridge", "forward_delay", "0")
            ip("link", "set", bridge, "up")
            self._bridges[vlan] = bridge
        return self._bridges[vlan]

    # The database -----------------------------------------------------------------------------

    def network(self, project: str, name: str, cidr: str, vlan: int) -> None:
        with self.db.session() as session:
            if not session.scalar(select(Project).where(Project.name == project)):
                inventory.create_project(session, project)
            inventory.create_network(session, self.settings, project, name, cidr, vlan=vlan)

    def node(self, name: str, mac: str, port: str) -> None:
        with self.db.session() as session:
            inventory.add_node(session, self.settings, name, mac, "sw1", port, f"ipmi://{name}")

    def spawn(self, instance: str, project: str, network: str, node: str) -> str:
        """A new instance holding `node` on `network`; its reserved address."""
        with self.db.session() as session:
            return claim(session, project, network, node, instance)

    def address_of(self, node_id: int) -> str:
        with self.db.session() as session:
            nic = session.query(Nic).filter_by(node_id=node_id).one()
            return session.query(IpAllocation).filter_by(nic_id=nic.id).one().address

    def release(self, instance: str) -> None:
        """What the lifecycle's last terminate step records (`Engine._terminate_release`,
        then the instance marked deleted): the instance lets go of its node."""
        with self.db.session() as session:
            inst = session.query(Instance).filter_by(name=instance).one()
            inst.holds_node_id = None
            inst.state = "deleted"
            inst.node.state = "available"

    def manager(self) -> DhcpManager:
        manager = DhcpManager(self.db)
        self.managers.append(manager)
        return manager

    def interfaces(self) -> DhcpInterfaces:
        return DhcpInterfaces.from_settings(self.settings)

    # Teardown ------------------------------------------------------------------------------------

    def close(self) -> None:
        for manager in self.managers:
            manager.stop()
        for link in json.loads(ip("-j", "link", "show")):
            if link["ifname"].startswith(self.prefix):  # veth ends first, then bridges
                with contextlib.suppress(RuntimeError):
                    ip("link", "del", link["ifname"])
        for netns in json.loads(ip("-j", "netns", "list") or "[]"):
            if netns["name"].startswith(self.prefix):
                ip("netns", "del", netns["name"])
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.db.engine.dispose()

    def leftovers(self) -> list[str]:
        netns = [n["name"] for n in json.loads(ip("-j", "netns", "list") or "[]")]
        links = [link["ifname"] for link in json.loads(ip("-j", "link", "show"))]
        files = [str(self.state_dir)] if self.state_dir.exists() else []
        return [name for name in netns + links if name.startswith(self.prefix)] + files
