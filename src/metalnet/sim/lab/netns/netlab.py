"""The root-mode data plane: namespaces for nodes, one Linux bridge per VLAN.

A node's switch port is the veth end outside its namespace. Plugging it into a
VLAN's bridge is the lab's whole model of a switch: only the bridge decides who
can exchange frames with whom, so reachability measured here is what the switch
configuration really allows. DHCP servers and the controller's endpoint each get
their own namespace on one bridge, never an address in the root namespace: the
host's stack touches every detached port, and would answer through it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from metalnet.dhcp import DhcpNetwork
from metalnet.dhcp.interfaces import DhcpInterfaces
from metalnet.dhcp.server import DnsmasqServer, ServerFiles
from metalnet.sim.lab.netns import cleanup, dhclient, probe
from metalnet.sim.lab.netns.endpoints import (
    DhcpServer,
    Endpoint,
    HostEndpoint,
    NodeEndpoint,
    TapPort,
)
from metalnet.sim.lab.netns.system import (
    NetLabError,
    harden_host_link,
    in_netns,
    ip,
    list_links,
    list_netns,
    require_root,
    run,
    tool,
)
from metalnet.validate import check_name, check_vlan, normalize_mac

log = logging.getLogger(__name__)

NODE_NIC = "eth0"
STOP_GRACE_SECONDS = 2.0
# Forward at once, and keep bridged frames away from the host's iptables (a FORWARD
# policy of DROP, as Docker sets, would otherwise silently break every VLAN).
BRIDGE_OPTIONS = ("forward_delay", "0", "nf_call_iptables", "0", "nf_call_ip6tables", "0",
                  "nf_call_arptables", "0")  # fmt: skip
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # SIGINT already raises KeyboardInterrupt


class NetLab:
    """Network namespaces, bridges, veths and processes, all removed on exit.

    Use as a context manager; leaving the block for any reason (return, exception,
    KeyboardInterrupt, SIGTERM/SIGHUP turned into SystemExit) removes everything.
    """

    def __init__(self) -> None:
        self.prefix = ""
        self.workdir = Path()
        self._names: set[str] = set()  # endpoint names, unique within the lab
        self._bridges: dict[int, str] = {}
        self._processes: list[subprocess.Popen[bytes]] = []
        self._dnsmasq: list[DnsmasqServer] = []
        self._saved_handlers: dict[int, Any] = {}
        self._hook = Path()

    def __enter__(self) -> NetLab:
        try:
            self.start()
        except BaseException:
            self.close()  # a half-started lab may already own its work directory
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Check root and tools, pick an unused prefix, make the work directory."""
        require_root()
        tool("ip")
        self.prefix = _unused_prefix()
        self.workdir = cleanup.workdir_for(self.prefix)
        self.workdir.mkdir(mode=0o711)  # dnsmasq, no longer root, reads its hosts file here
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        self._hook = dhclient.write_hook(self.workdir)
        self._install_signal_handlers()

    def close(self) -> None:
        """Stop tracked processes gracefully, then remove everything under the prefix."""
        if not self.prefix:
            return
        try:
            with _signals_ignored():
                for dnsmasq in self._dnsmasq:
                    dnsmasq.stop()
                _stop_all(self._processes)
                leftovers = cleanup.remove_lab(self.prefix)
            if leftovers:
                log.warning("netlab %s: could not remove %s", self.prefix, leftovers)
        finally:
            self._restore_signal_handlers()
            self.prefix = ""

    # --- topology -----------------------------------------------------------------

    def add_vlan(self, vlan_id: int) -> str:
        """The bridge that is VLAN `vlan_id` (created on first use, up, no address)."""
        vlan = check_vlan(vlan_id)
        if vlan not in self._bridges:
            bridge = self._name(f"v{vlan}")
            ip("link", "add", bridge, "type", "bridge", *BRIDGE_OPTIONS)
            harden_host_link(bridge)
            ip("link", "set", bridge, "up")
            self._bridges[vlan] = bridge
        return self._bridges[vlan]

    def add_node(self, name: str, mac: str) -> NodeEndpoint:
        """A node: a namespace whose NIC has `mac`; its port starts detached."""
        mac = normalize_mac(mac)
        netns, port = self._make_namespace(name, NODE_NIC, mac)
        node = NodeEndpoint(name=name, netns=netns, nic=NODE_NIC, port=port, mac=mac)
        return node

    def add_tap(self, name: str, mac: str) -> TapPort:
        """A virtual machine's port: a tap in the root namespace for QEMU to open
        (`-netdev tap,ifname=...`); it starts detached, and carries no host traffic."""
        check_name(name, "lab endpoint name")
        if name in self._names:
            raise ValueError(f"invalid lab endpoint name {name!r}: already used in this lab")
        tap = self._name(f"p{len(self._names) + 1}")
        self._names.add(name)
        ip("tuntap", "add", "dev", tap, "mode", "tap")
        harden_host_link(tap)
        ip("link", "set", tap, "up")
        return TapPort(name=name, port=tap, mac=normalize_mac(mac))

    def set_port_vlan(self, node: NodeEndpoint | TapPort, vlan_id: int | None) -> None:
        """Move the node's switch port to VLAN `vlan_id`'s bridge; None detaches it."""
        if vlan_id is None:
            ip("link", "set", node.port, "nomaster")
        else:
            ip("link", "set", node.port, "master", self.add_vlan(vlan_id))
        node.vlan = vlan_id

    def port_vlan(self, port: str) -> int | None:
        """The VLAN whose bridge the kernel has `port` on now (None: on none)."""
        (link,) = json.loads(ip("-j", "link", "show", "dev", port))
        vlans = {bridge: vlan for vlan, bridge in self._bridges.items()}
        return vlans.get(link.get("master"))

    def add_host_endpoint(
        self, vlan_id: int, ip_cidr: str | ipaddress.IPv4Interface, name: str = "controller"
    ) -> HostEndpoint:
        """A fixed address on one VLAN only, for a service such as the agent endpoint.

        It is a namespace of its own on that VLAN's bridge, so exactly the nodes whose
        ports are in that VLAN can reach it; run the service there with `run_in`.
        `ip_cidr` needs the subnet's prefix length (10.0.0.3/24), or replies to the
        nodes would have no route.
        """
        address = ipaddress.IPv4Interface(ip_cidr)
        if address.network.prefixlen == 32:
            raise ValueError(f"invalid endpoint address {ip_cidr!r}: give the subnet, e.g. /24")
        netns, port = self._plug_address(name, NODE_NIC, vlan_id, address)
        endpoint = HostEndpoint(name, netns, NODE_NIC, port, check_vlan(vlan_id), address)
        return endpoint

    def add_dhcp_server(self, network: DhcpNetwork) -> DhcpServer:
        """A real dnsmasq for `network`, in its own namespace on the network's VLAN.

        It runs as metalnet's DHCP manager runs it (`metalnet.dhcp.server`), with
        the namespace as its host; the lab stops it on exit.
        """
        name = f"dhcp-{network.name}"
        address = ipaddress.IPv4Interface(f"{network.server}/{network.cidr.prefixlen}")
        netns, port = self._plug_address(name, network.interface, network.vlan, address)
        dnsmasq = DnsmasqServer(
            network, ServerFiles(self.workdir / name), DhcpInterfaces(netns=netns)
        )
        self._dnsmasq.append(dnsmasq)
        dnsmasq.start()
        return DhcpServer(name, netns, network.interface, port, network.vlan, address, dnsmasq)

    def add_trunk_host(self, name: str) -> str:
        """A namespace that will sit on many VLANs (`add_trunk_vlan`), like a DHCP host
        on a trunk port; its name. It answers ARP only on the interface that holds
        the address asked for and forwards nothing, so it joins no two VLANs."""
        check_name(name, "lab endpoint name")
        netns = f"{self.prefix}-{name}"
        ip("netns", "add", netns)
        ip("-n", netns, "link", "set", "lo", "up")
        sysctl = "echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore; "
        sysctl += "echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce; "
        sysctl += "echo 0 > /proc/sys/net/ipv4/ip_forward"
        run(in_netns(netns, ["sh", "-c", sysctl]))
        return netns

    def add_trunk_vlan(self, netns: str, vlan_id: int, ifname: str) -> None:
        """Give trunk host `netns` an interface `ifname` on VLAN `vlan_id`'s bridge."""
        port = self._name(f"t{check_vlan(vlan_id)}")
        ip("link", "add", port, "type", "veth", "peer", "name", ifname, "netns", netns)
        harden_host_link(port)
        ip("link", "set", port, "master", self.add_vlan(vlan_id), "up")
        ip("-n", netns, "link", "set", ifname, "up")

    # --- processes and probes -----------------------------------------------------

    def run_in(
        self, endpoint: Endpoint, argv: Sequence[str], **popen: Any
    ) -> subprocess.Popen[bytes]:
        """Start `argv` inside the endpoint's namespace; the lab stops it on exit.

        Keyword arguments go to subprocess.Popen (stdout, env, cwd...).
        """
        return self._spawn(endpoint.netns, argv, **popen)

    def dhcp(self, node: NodeEndpoint, timeout: float = 3.0) -> ipaddress.IPv4Address | None:
        """Run a real DHCP client on the node's NIC; the leased address or None."""
        return dhclient.request_lease(node, self._hook, timeout)

    def addresses(self, endpoint: Endpoint) -> list[ipaddress.IPv4Address]:
        """The IPv4 addresses the endpoint holds right now."""
        return probe.addresses(endpoint)

    def reachable(
        self, src: Endpoint, dst_ip: ipaddress.IPv4Address | str, timeout: float = 0.5
    ) -> bool:
        """Whether a real ICMP echo from `src` to `dst_ip` is answered within `timeout`."""
        return probe.reachable(src, dst_ip, timeout)

    def matrix(
        self,
        endpoints: Sequence[Endpoint],
        timeout: float = 0.5,
        probe_with: probe.Probe = probe.reachable,
    ) -> probe.Matrix:
        """Reachability between every ordered pair of `endpoints`: result[src][dst].

        `probe_with` is `probe.reachable` (ICMP) or `probe.adjacent` (ARP, same VLAN).
        """
        return probe.matrix(endpoints, timeout, probe_with)

    # --- internals ----------------------------------------------------------------

    def _name(self, suffix: str) -> str:
        """A root-namespace interface name: prefix + suffix, within Linux's 15 bytes."""
        if not self.prefix:
            raise NetLabError("the lab is not started: use `with NetLab() as lab:`")
        name = f"{self.prefix}{suffix}"
        if len(name) > 15:
            raise NetLabError(f"interface name {name!r} is longer than 15 characters")
        return name

    def _make_namespace(self, name: str, nic: str, mac: str | None = None) -> tuple[str, str]:
        """A namespace `prefix-name` holding `nic`, whose peer (the port) stays outside."""
        check_name(name, "lab endpoint name")
        if name in self._names:
            raise ValueError(f"invalid lab endpoint name {name!r}: already used in this lab")
        port = self._name(f"p{len(self._names) + 1}")
        self._names.add(name)
        netns = f"{self.prefix}-{name}"
        ip("netns", "add", netns)
        peer = ["peer", "name", nic, *(["address", mac] if mac else []), "netns", netns]
        ip("link", "add", port, "type", "veth", *peer)
        harden_host_link(port)
        ip("link", "set", port, "up")
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "link", "set", nic, "up")
        return netns, port

    def _plug_address(
        self, name: str, nic: str, vlan_id: int, address: ipaddress.IPv4Interface
    ) -> tuple[str, str]:
        """A namespace with a fixed address whose port is on VLAN `vlan_id`."""
        netns, port = self._make_namespace(name, nic)
        ip("-n", netns, "addr", "add", str(address), "dev", nic)
        ip("link", "set", port, "master", self.add_vlan(vlan_id))
        return netns, port

    def _spawn(self, netns: str, argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start a tracked process in `netns`, in its own session so that the lab can
        stop it together with any children it forks."""
        process: subprocess.Popen[bytes] = subprocess.Popen(
            in_netns(netns, argv), start_new_session=True, **popen
        )
        self._processes.append(process)
        return process

    def _install_signal_handlers(self) -> None:
        """Turn SIGTERM/SIGHUP into SystemExit so `with` cleanup runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for number in EXIT_SIGNALS:
            if signal.getsignal(number) is signal.SIG_DFL:
                self._saved_handlers[number] = signal.signal(number, _exit_on_signal)

    def _restore_signal_handlers(self) -> None:
        for number, handler in self._saved_handlers.items():
            signal.signal(number, handler)
        self._saved_handlers.clear()


def _unused_prefix() -> str:
    """`mnl` + 4 random hex digits that no namespace, link or work dir uses yet."""
    taken = list_netns() + list_links()
    for _ in range(100):
        prefix = f"{cleanup.PREFIX_ROOT}{secrets.token_hex(2)}"
        unused = not any(name.startswith(prefix) for name in taken)
        if unused and not cleanup.workdir_for(prefix).exists():
            return prefix
    raise NetLabError("no unused lab prefix found; run cleanup_stale() to remove old labs")


def _exit_on_signal(number: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + number)


def _stop_all(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process group, then SIGKILL those still running after a grace period."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    for process in processes:
        _signal_group(process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_GRACE_SECONDS)


def _signal_group(process: subprocess.Popen[bytes], number: int) -> None:
    """Signal the process and the children it forked (it leads its own session)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, number)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Keep a second Ctrl-C or SIGTERM from interrupting cleanup half-way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, *EXIT_SIGNALS)
    saved = {number: signal.signal(number, signal.SIG_IGN) for number in signals}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
