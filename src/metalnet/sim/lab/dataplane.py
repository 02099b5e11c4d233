"""The lab's root-mode data plane: the switches' committed configuration, as packets see it.

`DataPlane` turns the unprivileged `Lab` into a network (see `metalnet.sim.lab.netns`
for namespaces, bridges and probes):

- Each lab node is a namespace whose NIC carries the node's MAC; each VLAN a port
  is ever committed to is a Linux bridge, made on first use. That includes VLAN 1,
  the switches' factory default: on a real switch the default VLAN connects its
  ports too, so giving it a bridge hides nothing. A port with no VLAN (or disabled)
  hangs off no bridge. On every commit the ports whose VLAN changed move to their
  new bridge; nothing else moves links.
- DHCP is metalnet's own DHCP manager (`metalnet.dhcp.manager`), as a real
  deployment runs it: one DHCP host (a namespace, `dhcp`) sits on every VLAN that
  has a network, with one interface per VLAN named `v{vlan}` (the lab creates them,
  as an operator would), and the manager runs one dnsmasq per network there. It
  serves the project networks from the database and, as an extra network, the
  service network (a subnet the caller gives, since metalnet has no setting for it;
  node N is reserved host `NODE_HOST_OFFSET + N's id`, with PXE options naming the
  service endpoint). The manager passes once before every DHCP exchange, so a new
  reservation is served at once (hosts file + SIGHUP, no restart).
- Node model: booting (PXE or disk) brings the NIC up and runs a real DHCP client;
  a port move while the node is on is a link renegotiation, after which the node
  runs DHCP again from scratch (no offer: no address); powering off flushes the
  addresses and takes the NIC down, so the node neither answers nor sends. Every
  action on one node runs on that node's own serial worker, so a DHCP exchange
  triggered by a commit and one triggered by a reboot never overlap; `settle()`
  waits for all of them.
- A node may be a QEMU machine (`LabNode.vm`, metalnet.sim.lab.vm): its port is then
  a tap in the root namespace, moved between bridges like a veth; its own firmware
  and OS do DHCP (the service network answers iPXE with the controller's chain
  script), so the lab's DHCP client is not used for it; the manager passes before
  each of its power events instead. Reachability to a machine is
  probed from the lab's endpoints to every address it may hold, and from inside it
  through its serial console while its OS offers a shell.
- The service endpoint (host 2 of the service subnet) runs a relay to the
  controller's Unix socket (`metalnet.sim.lab.netns.forwarder`) and an HTTP server for the
  lab's image directory: agents inside node namespaces reach both on the service
  network only. With QEMU machines it also answers IPv6 Router Solicitations with an
  advertisement that offers nothing (`metalnet.sim.lab.netns.router_advert`), so their
  iPXE stops waiting for an IPv6 router.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session

from metalnet.boot import ipxe
from metalnet.db.engine import Database
from metalnet.db.models import Network, Node
from metalnet.dhcp import DhcpHost, DhcpNetwork, PxeOptions
from metalnet.dhcp.interfaces import DhcpInterfaces
from metalnet.dhcp.manager import DhcpManager
from metalnet.power import BootDevice
from metalnet.sim.lab.netns import (
    Endpoint,
    HostEndpoint,
    Matrix,
    NetLab,
    NetLabError,
    NodeEndpoint,
    TapPort,
    forwarder,
    probe,
    router_advert,
)
from metalnet.sim.lab.netns.cleanup import cleanup_stale
from metalnet.sim.lab.netns.system import ip, tool
from metalnet.sim.lab.nodes import LabNode
from metalnet.sim.switch.device import SimSwitch

log = logging.getLogger(__name__)

SERVICE_ENDPOINT = "service"
AGENT_PORT = 8470
IMAGE_PORT = 8080
NODE_HOST_OFFSET = 100
DHCP_TIMEOUT = 2.0  # a served DHCP exchange takes milliseconds; no offer costs this
LEASE_SECONDS = 600
READY_SECONDS = 10.0
PXE_BOOT_FILE = "pxelinux.0"
DHCP_HOST = "dhcp"
DHCP_INTERFACE = "v{vlan}"  # the DHCP host's interface per VLAN, as `dhcp_interface`
DHCP_ENDPOINT = "dhcp-v{vlan}"  # the DHCP host's interface on one VLAN, as a probe endpoint
VM_BOOT_SECONDS = 120.0  # a QEMU machine under TCG: firmware, kernel, DHCP
VM_CONSOLE_SECONDS = 60.0  # one round of console pings (all at once, 1 s per unanswered one)
# A TCG guest on a loaded host may answer ARP later than a namespace's 0.5 s (seen in a
# demo run with another test beside it, twice with 2 s).
VM_PROBE_TIMEOUT = 3.0


@dataclass(eq=False)
class _NodeNamespace:
    """One lab node, its namespace and the serial worker that acts on it."""

    node: LabNode
    endpoint: NodeEndpoint | TapPort
    worker: ThreadPoolExecutor
    powered: bool = False
    last: Future[object] | None = field(default=None, repr=False)
    submitting: threading.Lock = field(default_factory=threading.Lock, repr=False)


class DataPlane:
    """Namespaces, bridges and DHCP servers that follow the lab's switches and BMCs.

    Create it before the `Lab` (the lab calls its hooks), `start()` it with the lab's
    nodes and switches once they are registered in the database, and `close()` it at the
    end, whatever happened.
    """

    def __init__(self, service_cidr: str) -> None:
        self.service_cidr = ipaddress.IPv4Network(service_cidr)
        self.endpoint_ip = self.service_cidr[2]
        self.netlab = NetLab()
        self.nodes: dict[str, _NodeNamespace] = {}
        self.dhcp: DhcpManager | None = None
        self.service: HostEndpoint | None = None
        self._db: Database | None = None
        self._links = threading.Lock()
        self._dhcp_host = ""  # the namespace the DHCP manager's interfaces live in
        self._dhcp_vlans: set[int] = set()
        self._dhcp_config = threading.Lock()

    # Addresses the controller and the demo need -------------------------------------

    @property
    def agent_url(self) -> str:
        """Where agents reach the controller: the relay on the service network."""
        return f"http://{self.endpoint_ip}:{AGENT_PORT}"

    @property
    def image_base_url(self) -> str:
        """Where agents download images: the HTTP server on the service network."""
        return f"http://{self.endpoint_ip}:{IMAGE_PORT}"

    @property
    def controller_socket(self) -> str:
        """The Unix socket the controller must also listen on (the relay's upstream)."""
        return str(self.netlab.workdir / "controller.sock")

    @property
    def prefix(self) -> str:
        """The NetLab prefix every namespace and link of this data plane carries."""
        return self.netlab.prefix

    # Building and tearing down ---------------------------------------------------------

    def start(
        self, nodes: Sequence[LabNode], switches: Sequence[SimSwitch], images: Path, db: Database
    ) -> None:
        """Build the network for `nodes` (registered in `db`), serve the `images`
        directory on the service network, and follow the `switches`' commits."""
        for name in ("dnsmasq", "busybox", "timeout"):
            tool(name)
        cleanup_stale()  # what a killed lab left behind; running labs are spared
        self.netlab.start()
        self._db = db
        service_vlan = db.settings.service_vlan
        address = f"{self.endpoint_ip}/{self.service_cidr.prefixlen}"
        self.service = self.netlab.add_host_endpoint(service_vlan, address, SERVICE_ENDPOINT)
        self._serve_on_service_network(images)
        self._dhcp_host = self.netlab.add_trunk_host(DHCP_HOST)
        self.dhcp = DhcpManager(
            db,
            DhcpInterfaces(template=DHCP_INTERFACE, netns=self._dhcp_host),
            self.netlab.workdir / "dhcp",
            extra=self._service_networks,
        )
        self.sync_reservations()
        for node in nodes:
            worker = ThreadPoolExecutor(1, f"plane-{node.name}")
            if node.vm is not None:
                tap = self.netlab.add_tap(node.name, node.mac)
                node.vm.tap = tap.port
                self.nodes[node.name] = _NodeNamespace(node, tap, worker)
                continue
            endpoint = self.netlab.add_node(node.name, node.mac)
            self.nodes[node.name] = _NodeNamespace(node, endpoint, worker)
            _nic_down(endpoint)  # lab nodes start powered off
        if any(node.vm is not None for node in nodes):  # their iPXE waits for an IPv6 router
            advertise = [sys.executable, "-m", "metalnet.sim.lab.netns.router_advert"]
            self._run_service("IPv6 router", [*advertise, self.service.nic], router_advert.READY)
        for switch in switches:
            switch.on_commit(self._committed)
            self._committed(switch, switch.port_vlans())

    def close(self) -> None:
        """Stop the node workers, then remove every namespace, link and process."""
        for node in self.nodes.values():
            node.worker.shutdown(wait=True, cancel_futures=True)
        if self.dhcp is not None:
            self.dhcp.stop()
        self.netlab.close()

    def _serve_on_service_network(self, images: Path) -> None:
        """The controller relay and the image server, inside the service endpoint."""
        host = str(self.endpoint_ip)
        relay = [sys.executable, "-m", "metalnet.sim.lab.netns.forwarder"]
        relay += [f"{host}:{AGENT_PORT}", self.controller_socket]
        self._run_service("controller relay", relay, forwarder.READY)
        http = [sys.executable, "-u", "-m", "http.server", str(IMAGE_PORT), "--bind", host]
        self._run_service("image server", [*http, "--directory", str(images)], "Serving HTTP")

    def _run_service(self, what: str, argv: Sequence[str], ready: str) -> None:
        """Start a server in the service namespace; return once it prints `ready`."""
        process = self.netlab.run_in(
            self.service, argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        readable, _, _ = select.select([process.stdout], [], [], READY_SECONDS)
        line = process.stdout.readline().decode() if readable else ""
        if ready not in line:
            raise NetLabError(f"{what} did not start on the service network: {line!r}")

    # DHCP follows the database ---------------------------------------------------------

    def sync_reservations(self) -> None:
        """Give the DHCP host an interface on every network's VLAN, then one manager pass."""
        with self._db.session() as session:
            vlans = set(session.scalars(sql_select(Network.vlan)))
        with self._dhcp_config:  # node workers call this concurrently
            for vlan in sorted((vlans | {self._db.settings.service_vlan}) - self._dhcp_vlans):
                interface = DHCP_INTERFACE.format(vlan=vlan)
                self.netlab.add_trunk_vlan(self._dhcp_host, vlan, interface)
                self._dhcp_vlans.add(vlan)
            self.dhcp.sync()

    def _service_networks(self, session: Session) -> list[DhcpNetwork]:
        """The provisioning network: every node reserved, PXE options to the endpoint."""
        nodes = session.scalars(sql_select(Node).order_by(Node.id)).all()
        hosts = [
            DhcpHost(node.nics[0].mac, self.service_cidr[NODE_HOST_OFFSET + node.id], node.name)
            for node in nodes
        ]
        vlan = self._db.settings.service_vlan
        return [
            DhcpNetwork(
                SERVICE_ENDPOINT,
                vlan,
                self.service_cidr,
                self.service_cidr[3],
                DHCP_INTERFACE.format(vlan=vlan),
                hosts=hosts,
                pxe=PxeOptions(
                    PXE_BOOT_FILE,
                    self.endpoint_ip,
                    self.agent_url,
                    ipxe_url=self.agent_url + ipxe.CHAIN_ROUTE,
                ),
                lease_seconds=LEASE_SECONDS,
            )
        ]

    def reserved(self, node: str, vlan: int) -> ipaddress.IPv4Address | None:
        """The address `node` is reserved on VLAN `vlan`'s network, if any."""
        mac = self.nodes[node].endpoint.mac
        server = self.dhcp.servers.get(vlan)
        hosts = server.network.hosts if server else ()
        return next((host.ip for host in hosts if host.mac == mac), None)

    # The switches move links ------------------------------------------------------------

    def _committed(self, switch: SimSwitch, vlans: dict[str, int | None]) -> None:
        """Commit hook (on the switch's loop): move exactly the ports whose VLAN changed."""
        with self._links:
            for node in self.nodes.values():
                vlan = vlans.get(node.node.interface)
                if node.node.switch is not switch or vlan == node.endpoint.vlan:
                    continue
                self.netlab.set_port_vlan(node.endpoint, vlan)
                log.info("plane: %s port %s -> VLAN %s", node.node.name, node.node.interface, vlan)
                self._submit(node, self._renegotiate, node)

    # Hooks the lab calls on power events -------------------------------------------------

    def on_node(self, node: LabNode, action: Callable[[], object]) -> None:
        """Run `action` on the node's own timeline, after everything submitted before it.

        The lab hands over what a power event does to the node, so that the BMC can
        answer at once while the node boots, and `boot`/`power_off` run in order with
        the DHCP exchanges that port moves trigger.
        """
        plane_node = self.nodes[node.name]
        if node.vm is not None:  # its own firmware or OS asks at once: serve what it may ask
            self._submit(plane_node, self.sync_reservations)
        self._submit(plane_node, action)

    def boot(self, node: LabNode, pxe: bool) -> bool:
        """The node boots (call on its timeline): NIC up, DHCP. True if it got an address;
        for a PXE boot one on the service network, whose DHCP server sends PXE options."""
        plane_node = self.nodes[node.name]
        plane_node.powered = True
        ip("-n", plane_node.endpoint.netns, "link", "set", plane_node.endpoint.nic, "up")
        lease = self._dhcp(plane_node)
        if pxe:
            return lease is not None and lease in self.service_cidr
        return lease is not None

    def power_off(self, node: LabNode) -> None:
        """The node lost power (call on its timeline): no address, NIC down."""
        plane_node = self.nodes[node.name]
        plane_node.powered = False
        _nic_down(plane_node.endpoint)

    def run_in(self, node: LabNode, argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start a process (the agent) inside the node's namespace."""
        return self.netlab.run_in(self.nodes[node.name].endpoint, argv, **popen)

    # Observing ------------------------------------------------------------------------------

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every node action submitted so far (DHCP after a move...) is done,
        and every running machine's OS has finished booting (or has given up)."""
        pending = [node.last for node in self.nodes.values() if node.last is not None]
        wait_all(pending, timeout)
        for node in self.nodes.values():
            vm = node.node.vm
            if vm is not None and vm.running and not vm.booted():
                left = VM_BOOT_SECONDS - (time.monotonic() - vm.boot_started)
                deadline = time.monotonic() + max(0.0, left)
                while not vm.booted() and time.monotonic() < deadline and vm.running:
                    time.sleep(0.2)

    def port_vlan(self, node: str) -> int | None:
        """The VLAN whose bridge the node's port (veth or tap) is on, read from the kernel."""
        return self.netlab.port_vlan(self.nodes[node].endpoint.port)

    def fixed_planes(self) -> dict[str, int]:
        """The endpoints that never move, by name, and the VLAN each one is on: the
        service endpoint and the DHCP host's interface on every network's VLAN."""
        vlans = {DHCP_ENDPOINT.format(vlan=vlan): vlan for vlan in sorted(self._dhcp_vlans)}
        return {SERVICE_ENDPOINT: self.service.vlan, **vlans}

    def _fixed_endpoints(self) -> list[Endpoint]:
        host, names = self._dhcp_host, (DHCP_ENDPOINT, DHCP_INTERFACE)
        dhcp = [
            Endpoint(names[0].format(vlan=v), host, names[1].format(vlan=v), "")
            for v in sorted(self._dhcp_vlans)
        ]
        return [self.service, *dhcp]

    def observe(self, timeout: float) -> tuple[Matrix, dict[str, list[str]]]:
        """ARP reachability between all namespaces (nodes, service endpoint, DHCP host
        interfaces), then to and from the QEMU machines; the nodes' addresses.

        A machine holds no namespace: it is probed by ARP for every address it may hold
        (its reservations), and probes from inside through its console while its OS
        offers a shell; pairs it cannot be probed from stay out of the matrix.
        """
        endpoints = [n.endpoint for n in self.nodes.values() if isinstance(n.endpoint, Endpoint)]
        addresses = {e.name: [str(a) for a in self.netlab.addresses(e)] for e in endpoints}
        fixed = self._fixed_endpoints()
        reach = self.netlab.matrix([*endpoints, *fixed], timeout, probe.adjacent)
        vms = [n.node for n in self.nodes.values() if n.node.vm is not None]
        if vms:
            self._observe_vms(vms, [*endpoints, *fixed], reach, addresses, timeout)
        return reach, addresses

    def _observe_vms(
        self,
        vms: list[LabNode],
        endpoints: list[Endpoint],
        reach: Matrix,
        addresses: dict[str, list[str]],
        timeout: float,
    ) -> None:
        held = {e.name: [str(a) for a in self.netlab.addresses(e)] for e in endpoints}
        vm_timeout = max(timeout, VM_PROBE_TIMEOUT)
        for vm in vms:
            address = vm.vm.address()
            addresses[vm.name] = [str(address)] if address else []
            held[vm.name] = [str(a) for a in self.reservations(vm.name)]
        with ThreadPoolExecutor(max_workers=probe.MAX_PARALLEL_PROBES) as pool:
            to_vm = {
                (src.name, vm.name): pool.submit(
                    lambda s, targets: any(probe.adjacent(s, a, vm_timeout) for a in targets),
                    src,
                    held[vm.name],
                )
                for src in endpoints
                for vm in vms
            }
            from_vm = {
                vm.name: pool.submit(self._console_row, vm, held)
                for vm in vms
                if vm.vm.booted_from == BootDevice.DISK and addresses[vm.name]
            }
            for (src, dst), answer in to_vm.items():
                reach[src][dst] = answer.result()
            for vm in vms:
                reach[vm.name] = from_vm[vm.name].result() if vm.name in from_vm else {}

    def _console_row(self, vm: LabNode, held: dict[str, list[str]]) -> dict[str, bool]:
        """From inside the machine: does one ICMP echo reach any address of each other
        endpoint? Empty when no shell answered on the console (a ramdisk offers none)."""
        others = {name: targets for name, targets in held.items() if name != vm.name}
        targets = sorted({a for addrs in others.values() for a in addrs})
        answered = vm.vm.ping_all(targets, VM_CONSOLE_SECONDS)
        if not answered:
            return {}
        return {name: any(answered.get(a, False) for a in addrs) for name, addrs in others.items()}

    def reservations(self, node: str) -> list[ipaddress.IPv4Address]:
        """Every address `node` is reserved on any network (where it may hold one)."""
        return [
            address
            for vlan in sorted(self.dhcp.servers)
            if (address := self.reserved(node, vlan)) is not None
        ]

    # Node actions, each on the node's own worker ------------------------------------------------

    def _submit(self, node: _NodeNamespace, action: Callable[..., object], *args: object) -> None:
        with node.submitting:  # `last` must be the newest future, whichever thread submits
            future = node.worker.submit(action, *args)
            node.last = future
        future.add_done_callback(_log_failure)

    def _renegotiate(self, node: _NodeNamespace) -> None:
        """Link renegotiation after a port move: a running node asks for an address again."""
        if node.powered:
            self._dhcp(node)

    def _dhcp(self, node: _NodeNamespace) -> ipaddress.IPv4Address | None:
        self.sync_reservations()
        lease = self.netlab.dhcp(node.endpoint, timeout=DHCP_TIMEOUT)
        log.info("plane: %s on VLAN %s leased %s", node.endpoint.name, node.endpoint.vlan, lease)
        return lease


def _nic_down(endpoint: NodeEndpoint) -> None:
    ip("-n", endpoint.netns, "addr", "flush", "dev", endpoint.nic)
    ip("-n", endpoint.netns, "link", "set", endpoint.nic, "down")


def _log_failure(future: Future[object]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("plane: node action failed: %s", future.exception())
