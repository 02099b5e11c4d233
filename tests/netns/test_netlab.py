"""The root-mode lab: real namespaces, bridges, dnsmasq, DHCP clients and pings.

Two VLANs (service 100, project 200), each with its own dnsmasq; three nodes.
Reachability is measured with packets, never inferred from the lab's bookkeeping,
and teardown is checked with `ip` itself.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from netlab_child_lab import build_small_lab
from netns_env import NOBODY

from metalnet.dhcp import DhcpHost, DhcpNetwork
from metalnet.sim.lab.netns import NetLab, NetLabNeedsRoot, NodeEndpoint, cleanup_stale

NEEDED = {"ip": "iproute2", "dnsmasq": "dnsmasq", "busybox": "busybox", "ping": "iputils-ping"}


def _why_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root: network namespaces and bridges (CI runs these as root)"
    path = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
    missing = [pkg for tool, pkg in NEEDED.items() if not shutil.which(tool, path=path)]
    return f"missing packages: apt-get install {' '.join(missing)}" if missing else None


REASON = _why_unavailable()
if REASON and os.environ.get("METALNET_REQUIRE_NETNS") == "1":
    raise RuntimeError(f"namespace tests required (METALNET_REQUIRE_NETNS=1) but {REASON}")
pytestmark = [pytest.mark.netns, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

SERVICE, PROJECT = 100, 200
MACS = {"node-a": "02:00:00:00:0a:01", "node-b": "02:00:00:00:0a:02", "node-c": "02:00:00:00:0a:03"}
STRANGER_MAC = "02:00:00:00:0b:ff"
HOST_NUMBER = {"node-a": 11, "node-b": 12, "node-c": 13}


def network(name: str, vlan: int, nodes: list[str]) -> DhcpNetwork:
    """Network 10.<vlan>.0.0/24, server .2, node reservations at .11-.13."""
    cidr = ipaddress.IPv4Network(f"10.{vlan}.0.0/24")
    hosts = [DhcpHost(MACS[n], cidr[HOST_NUMBER[n]], n) for n in nodes]
    return DhcpNetwork(name, vlan, cidr, cidr[2], "eth0", hosts=hosts, lease_seconds=600)


def reserved(name: str, vlan: int) -> IPv4Address:
    """The address `name` is reserved in the network of `vlan`."""
    return IPv4Address(f"10.{vlan}.0.{HOST_NUMBER[name]}")


class Topology:
    """The shared lab: every test first puts the ports where it needs them."""

    def __init__(self, lab: NetLab) -> None:
        self.lab = lab
        self.servers = {
            SERVICE: lab.add_dhcp_server(network("service", SERVICE, list(MACS))),
            PROJECT: lab.add_dhcp_server(network("project", PROJECT, ["node-b", "node-c"])),
        }
        self.nodes = {name: lab.add_node(name, mac) for name, mac in MACS.items()}

    def place(self, layout: dict[str, int | None]) -> dict[str, IPv4Address | None]:
        """Move ports, then run DHCP on every attached node; the leases obtained."""
        for name, vlan in layout.items():
            self.lab.set_port_vlan(self.nodes[name], vlan)
        return {
            name: self.lab.dhcp(self.nodes[name], timeout=2)
            for name, vlan in layout.items()
            if vlan is not None
        }

    def reachable_pairs(self) -> set[tuple[str, str]]:
        endpoints = [*self.nodes.values(), *self.servers.values()]
        measured = self.lab.matrix(endpoints)
        return {(src, dst) for src, row in measured.items() for dst, ok in row.items() if ok}


def pairs_within(*groups: list[str]) -> set[tuple[str, str]]:
    """Every ordered pair inside each group: what 'reachable exactly within' means."""
    return {(a, b) for group in groups for a in group for b in group if a != b}


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with NetLab() as lab:
        yield Topology(lab)


def test_nodes_get_exactly_their_reserved_addresses(topo: Topology) -> None:
    leases = topo.place({"node-a": SERVICE, "node-b": SERVICE, "node-c": PROJECT})

    assert leases == {
        "node-a": reserved("node-a", SERVICE),
        "node-b": reserved("node-b", SERVICE),
        "node-c": reserved("node-c", PROJECT),
    }
    for name, address in leases.items():
        assert topo.lab.addresses(topo.nodes[name]) == [address]


def test_same_vlan_reaches_other_vlan_does_not(topo: Topology) -> None:
    topo.place({"node-a": SERVICE, "node-b": SERVICE, "node-c": PROJECT})

    assert topo.reachable_pairs() == pairs_within(
        ["node-a", "node-b", "dhcp-service"], ["node-c", "dhcp-project"]
    )


def test_moving_a_port_flips_dhcp_and_reachability(topo: Topology) -> None:
    topo.place({"node-a": SERVICE, "node-b": SERVICE, "node-c": PROJECT})

    assert topo.place({"node-b": PROJECT}) == {"node-b": reserved("node-b", PROJECT)}
    assert topo.reachable_pairs() == pairs_within(
        ["node-a", "dhcp-service"], ["node-b", "node-c", "dhcp-project"]
    )
    assert topo.place({"node-b": SERVICE}) == {"node-b": reserved("node-b", SERVICE)}
    assert topo.reachable_pairs() == pairs_within(
        ["node-a", "node-b", "dhcp-service"], ["node-c", "dhcp-project"]
    )


def test_a_moved_node_keeping_its_old_address_still_cannot_reach_its_old_vlan(
    topo: Topology,
) -> None:
    topo.place({"node-a": SERVICE, "node-b": SERVICE, "node-c": PROJECT})
    node_b = topo.nodes["node-b"]

    topo.lab.set_port_vlan(node_b, PROJECT)  # no DHCP: b still holds its service address

    assert topo.lab.addresses(node_b) == [reserved("node-b", SERVICE)]
    assert not topo.lab.reachable(node_b, reserved("node-a", SERVICE))
    assert not topo.lab.reachable(topo.nodes["node-a"], reserved("node-b", SERVICE))


def test_a_detached_port_reaches_nothing_and_gets_no_lease(topo: Topology) -> None:
    topo.place({"node-a": SERVICE, "node-b": SERVICE, "node-c": PROJECT})

    topo.place({"node-b": None})  # keeps its address, loses its link

    assert topo.reachable_pairs() == pairs_within(
        ["node-a", "dhcp-service"], ["node-c", "dhcp-project"]
    )
    assert topo.lab.dhcp(topo.nodes["node-b"], timeout=1) is None
    assert topo.lab.addresses(topo.nodes["node-b"]) == []


def test_unreserved_macs_get_no_lease(topo: Topology) -> None:
    stranger = topo.lab.add_node("stranger", STRANGER_MAC)
    topo.lab.set_port_vlan(stranger, SERVICE)
    assert topo.lab.dhcp(stranger, timeout=1) is None

    topo.lab.set_port_vlan(topo.nodes["node-a"], PROJECT)  # not reserved in the project net
    assert topo.lab.dhcp(topo.nodes["node-a"], timeout=1) is None


def test_bad_names_and_addresses_are_refused_before_anything_is_made(topo: Topology) -> None:
    before = leftovers(topo.lab.prefix)
    bad_calls: dict[str, Callable[[], object]] = {
        "node-a": lambda: topo.lab.add_node("node-a", "02:00:00:00:0d:01"),
        "'Node D'": lambda: topo.lab.add_node("Node D", "02:00:00:00:0d:01"),
        "MAC '02:00:00:00:0d'": lambda: topo.lab.add_node("node-d", "02:00:00:00:0d"),
        "'10.100.0.9'": lambda: topo.lab.add_host_endpoint(SERVICE, "10.100.0.9"),
        "VLAN 4095": lambda: topo.lab.add_vlan(4095),
    }
    for named, call in bad_calls.items():
        with pytest.raises(ValueError, match=named):
            call()
    assert leftovers(topo.lab.prefix) == before


# An HTTP GET with a 1 s timeout and no proxy (busybox wget crashes on some kernels).
FETCH = (
    "import sys, urllib.request as u; "
    "opener = u.build_opener(u.ProxyHandler({})); "
    "sys.stdout.write(opener.open(sys.argv[1], timeout=1).read().decode())"
)


def test_host_endpoint_serves_the_service_vlan_only(topo: Topology, tmp_path: Path) -> None:
    lab = topo.lab
    topo.place({"node-a": SERVICE, "node-b": PROJECT, "node-c": PROJECT})
    endpoint = lab.add_host_endpoint(SERVICE, "10.100.0.3/24", name="agent-api")
    (tmp_path / "task").write_text("deploy")
    server = [sys.executable, "-m", "http.server", "8080", "--bind", "10.100.0.3"]
    lab.run_in(endpoint, [*server, "--directory", str(tmp_path)], stderr=subprocess.DEVNULL)

    def fetch(node: NodeEndpoint) -> bytes | None:
        argv = [sys.executable, "-c", FETCH, "http://10.100.0.3:8080/task"]
        client = lab.run_in(node, argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        out, _ = client.communicate(timeout=5)
        return out if client.returncode == 0 else None

    deadline = time.monotonic() + 5
    while fetch(topo.nodes["node-a"]) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fetch(topo.nodes["node-a"]) == b"deploy"
    assert fetch(topo.nodes["node-b"]) is None
    # Even with a service address (as if it had kept one), a project node cannot get in.
    subprocess.run(
        ["ip", "-n", topo.nodes["node-c"].netns, "addr", "add", "10.100.0.99/24", "dev", "eth0"],
        check=True,
    )
    assert fetch(topo.nodes["node-c"]) is None


# --- teardown -------------------------------------------------------------------------


def leftovers(prefix: str) -> list[str]:
    """Namespaces and links named with `prefix`, listed by `ip` itself."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    names = [line.split()[0] for line in netns.stdout.splitlines()]
    names += [line.split(": ")[1].split("@")[0] for line in links.stdout.splitlines()]
    return [name for name in names if name.startswith(prefix)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_exit_removes_every_namespace_link_process_and_file() -> None:
    with NetLab() as lab:
        prefix, workdir = lab.prefix, lab.workdir
        pids = build_small_lab(lab)
        assert len(leftovers(prefix)) == 5  # 2 namespaces, a bridge, 2 ports
        assert all(alive(pid) for pid in pids)

    assert leftovers(prefix) == []
    assert not any(alive(pid) for pid in pids)
    assert not workdir.exists()


def test_cleanup_also_happens_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), NetLab() as lab:
        prefix = lab.prefix
        pids = build_small_lab(lab)
        raise RuntimeError("boom")

    assert leftovers(prefix) == []
    assert not any(alive(pid) for pid in pids)


def start_child_lab() -> tuple[subprocess.Popen[str], str, list[int]]:
    """The small lab in a process of its own; returns it, its prefix and its pids."""
    script = Path(__file__).with_name("netlab_child_lab.py")
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    prefix, *pids = child.stdout.readline().split()
    return child, prefix, [int(pid) for pid in pids]


@pytest.mark.parametrize(
    ("number", "exit_status"),
    [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, -signal.SIGINT)],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_tears_the_lab_down(number: int, exit_status: int) -> None:
    child, prefix, pids = start_child_lab()
    assert leftovers(prefix)

    child.send_signal(number)

    assert child.wait(timeout=15) == exit_status
    assert leftovers(prefix) == []
    assert not any(alive(pid) for pid in pids)


def test_cleanup_stale_removes_what_a_killed_lab_left() -> None:
    child, prefix, pids = start_child_lab()
    child.kill()
    child.wait(timeout=5)
    assert leftovers(prefix) and alive(pids[0])  # dnsmasq outlives its killed owner

    assert cleanup_stale(prefix) == [prefix]

    assert leftovers(prefix) == []
    assert not any(alive(pid) for pid in pids)


def test_cleanup_stale_spares_a_running_lab() -> None:
    with NetLab() as lab:
        lab.add_vlan(SERVICE)
        assert lab.prefix not in cleanup_stale()
        assert leftovers(lab.prefix) == [f"{lab.prefix}v{SERVICE}"]


def test_refuses_to_start_without_root() -> None:
    code = "from metalnet.sim.lab.netns import NetLab\nwith NetLab():\n    pass\n"
    result = subprocess.run(
        [*NOBODY, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert f"{NetLabNeedsRoot.__name__}: the network-namespace lab needs root" in result.stderr
