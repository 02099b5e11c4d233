"""The DHCP manager against real dnsmasq and a real DHCP client, in network namespaces.

The database is changed through metalnet's own functions (networks, nodes,
instances); the manager is driven with `sync()` (one pass, as its loop does every
`dhcp_interval`) except where its background loop is what is tested.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metalnet import inventory
from metalnet.db.models import Instance
from metalnet.dhcp.interfaces import DhcpHostError
from metalnet.metrics import DHCP_SERVER_RESTARTS
from metalnet.sim.lab.dhcp_world import DhcpWorld, why_unavailable

REASON = why_unavailable()
if REASON and os.environ.get("METALNET_REQUIRE_NETNS") == "1":
    raise RuntimeError(f"namespace tests required (METALNET_REQUIRE_NETNS=1) but {REASON}")
pytestmark = [pytest.mark.netns, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

VLAN = 120
CIDR = "10.120.0.0/24"
GATEWAY = "10.120.0.1"
MAC = {f"n{i}": f"02:00:00:00:12:{i:02x}" for i in range(1, 6)}
STRANGER = "02:00:00:00:12:ff"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DhcpWorld]:
    world = DhcpWorld(tmp_path)
    try:
        world.vlan_interface(VLAN)
        world.network("acme", "web", CIDR, VLAN)
        for index, (name, mac) in enumerate(MAC.items(), start=1):
            world.node(name, mac, f"eth{index}")
        yield world
    finally:
        world.close()
    assert world.leftovers() == []


def wait_for(condition, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.05)


def log_of(world: DhcpWorld) -> str:
    return (Path(world.settings.dhcp_state_dir) / f"vlan{VLAN}" / "dnsmasq.log").read_text()


def test_serves_a_reserved_mac_and_refuses_an_unknown_one(world: DhcpWorld) -> None:
    address = world.spawn("web-1", "acme", "web", "n1")
    manager = world.manager()

    manager.sync()

    lease = world.dhcp(world.client(VLAN, MAC["n1"]))
    assert lease is not None and str(lease.address) == address
    assert lease.router == GATEWAY
    assert world.dhcp(world.client(VLAN, STRANGER), tries=2) is None
    assert f"DHCPDISCOVER(vl{VLAN}) {STRANGER} ignored" in log_of(world)
    assert (
        "option:dns-server,192.0.2.53"
        in (Path(world.settings.dhcp_state_dir) / f"vlan{VLAN}" / "dnsmasq.conf").read_text()
    )


def test_new_reservation_is_served_without_a_restart(world: DhcpWorld) -> None:
    first_address = world.spawn("web-1", "acme", "web", "n1")
    manager = world.manager()
    manager.sync()
    first = world.client(VLAN, MAC["n1"])
    assert world.dhcp(first) is not None
    pid = manager.servers[VLAN].pid

    second_address = world.spawn("web-2", "acme", "web", "n2")
    manager.sync()
    lease = world.dhcp(world.client(VLAN, MAC["n2"]))

    assert lease is not None and str(lease.address) == second_address
    assert manager.servers[VLAN].pid == pid
    leases = (Path(world.settings.dhcp_state_dir) / f"vlan{VLAN}" / "leases").read_text()
    assert f"{MAC['n1']} {first_address}" in leases
    renewed = world.dhcp(first)
    assert renewed is not None and str(renewed.address) == first_address


def test_a_deleted_instances_address_is_freed_and_refused_to_its_old_mac(
    world: DhcpWorld,
) -> None:
    world.spawn("web-1", "acme", "web", "n1")
    old_address = world.spawn("web-2", "acme", "web", "n2")
    manager = world.manager()
    manager.sync()
    old = world.client(VLAN, MAC["n2"])
    assert world.dhcp(old) is not None
    pid = manager.servers[VLAN].pid

    world.release("web-2")
    manager.sync()

    assert world.dhcp(old, tries=2) is None
    assert f"DHCPDISCOVER(vl{VLAN}) {MAC['n2']} ignored" in log_of(world)
    new_address = world.spawn("web-3", "acme", "web", "n3")  # the pool hands it out again
    assert new_address == old_address
    manager.sync()
    lease = world.dhcp(world.client(VLAN, MAC["n3"]))
    assert lease is not None and str(lease.address) == old_address
    assert manager.servers[VLAN].pid == pid


def test_an_address_goes_from_a_deleted_instance_to_a_new_one_in_one_pass(
    world: DhcpWorld,
) -> None:
    world.spawn("web-1", "acme", "web", "n1")
    manager = world.manager()
    manager.sync()
    old = world.client(VLAN, MAC["n1"])
    old_lease = world.dhcp(old)
    assert old_lease is not None

    world.release("web-1")
    world.spawn("web-2", "acme", "web", "n2")
    manager.sync()

    lease = world.dhcp(world.client(VLAN, MAC["n2"]))
    assert lease is not None and lease.address == old_lease.address
    assert world.dhcp(old, tries=2) is None


def test_deleting_the_network_stops_its_dnsmasq_and_leaves_no_files(world: DhcpWorld) -> None:
    world.spawn("web-1", "acme", "web", "n1")
    manager = world.manager()
    manager.sync()
    pid = manager.servers[VLAN].pid
    directory = Path(world.settings.dhcp_state_dir) / f"vlan{VLAN}"
    assert (directory / "leases").parent.is_dir()
    server_ip = ipaddress.IPv4Interface("10.120.0.254/24")
    assert server_ip in world.interfaces().addresses(f"vl{VLAN}")

    world.release("web-1")
    with world.db.session() as session:
        inventory.delete_network(session, "acme", "web")
    manager.sync()

    assert VLAN not in manager.servers
    assert not Path(f"/proc/{pid}").exists()
    assert not directory.exists()
    assert server_ip not in world.interfaces().addresses(f"vl{VLAN}")


def test_a_killed_dnsmasq_comes_back(world: DhcpWorld) -> None:
    world.spawn("web-1", "acme", "web", "n1")
    manager = world.manager()
    manager.interval = 0.2
    manager.start()
    pid = manager.servers[VLAN].pid
    before = DHCP_SERVER_RESTARTS.labels(network=f"vlan{VLAN}")._value.get()

    os.kill(pid, signal.SIGKILL)

    wait_for(
        lambda: manager.servers[VLAN].pid not in (None, pid) and manager.servers[VLAN].alive(),
        "a new dnsmasq",
    )
    assert DHCP_SERVER_RESTARTS.labels(network=f"vlan{VLAN}")._value.get() == before + 1
    assert world.dhcp(world.client(VLAN, MAC["n1"])) is not None


def test_a_dnsmasq_that_keeps_dying_is_restarted_with_back_off(
    world: DhcpWorld, virtual_clock: list[float]
) -> None:
    from metalnet import retry

    world.spawn("web-1", "acme", "web", "n1")
    manager = world.manager()
    manager.sync()

    def crash() -> None:
        process = manager.servers[VLAN].process
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)

    crash()
    manager.sync()
    assert manager.servers[VLAN].alive()  # the first time at once
    crash()
    manager.sync()
    assert not manager.servers[VLAN].alive()  # again so soon: it waits
    retry.sleep(1.0)  # the virtual clock passes the first back-off (1 s)
    manager.sync()
    assert manager.servers[VLAN].alive()
    assert world.dhcp(world.client(VLAN, MAC["n1"])) is not None


def test_node_and_instance_names_that_are_no_host_names_do_not_break_the_network(
    world: DhcpWorld,
) -> None:
    """`web.1` and `web_1` clean up to the same label; a name from before validation
    (spaces) is cleaned too: every reserved client is still served."""
    addresses = {
        "n1": world.spawn("web.1", "acme", "web", "n1"),
        "n2": world.spawn("web_1", "acme", "web", "n2"),
        "n3": world.spawn("plain", "acme", "web", "n3"),
    }
    with world.db.session() as session:
        session.query(Instance).filter_by(name="plain").one().name = "Web Server #3"
    manager = world.manager()
    manager.sync()

    for node, address in addresses.items():
        lease = world.dhcp(world.client(VLAN, MAC[node]))
        assert lease is not None and str(lease.address) == address, node
    hosts = (Path(world.settings.dhcp_state_dir) / f"vlan{VLAN}" / "hosts").read_text()
    assert {line.split(",")[2] for line in hosts.splitlines()} == {
        "web-1",
        "web-1-001202",
        "web-server-3",
    }


def test_a_missing_interface_is_named_and_other_networks_are_still_served(
    world: DhcpWorld,
) -> None:
    world.network("acme", "db", "10.121.0.0/24", 121)  # no vl121 on the DHCP host
    world.spawn("web-1", "acme", "web", "n1")
    world.spawn("db-1", "acme", "db", "n2")
    manager = world.manager()

    manager.sync()

    assert manager.problems == {
        121: f"interface vl121 for VLAN 121 does not exist in network namespace "
        f"{world.host_netns}: create it (e.g. an 802.1Q link or a bridge on the VLAN); "
        "metalnet does not create it"
    }
    assert world.dhcp(world.client(VLAN, MAC["n1"])) is not None

    world.vlan_interface(121)
    manager.sync()
    assert manager.problems == {}
    assert world.dhcp(world.client(121, MAC["n2"])) is not None


def _pid(path: Path) -> int | None:
    """The pid in a pid file, or None while it is missing or half written."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def write_config(world: DhcpWorld, tmp_path: Path) -> Path:
    path = tmp_path / "metalnet.toml"
    path.write_text(
        f'database_url = "{world.settings.database_url}"\n'
        f'dhcp_interface = "vl{{vlan}}"\n'
        f'dhcp_netns = "{world.host_netns}"\n'
        f'dhcp_state_dir = "{world.settings.dhcp_state_dir}"\n'
        "dhcp_interval = 0.2\n"
    )
    return path


def test_dhcp_agent_check_names_what_is_missing(world: DhcpWorld, tmp_path: Path, cli) -> None:
    world.network("acme", "db", "10.121.0.0/24", 121)
    world.spawn("web-1", "acme", "web", "n1")
    world.spawn("db-1", "acme", "db", "n2")

    result = cli("--config", str(write_config(world, tmp_path)), "dhcp-agent", "--check")

    assert result.exit_code == 1
    assert "vl120" in result.stdout and "not served" in result.stdout
    assert result.stderr.startswith("error: interface vl121 for VLAN 121 does not exist in ")


def test_the_dhcp_agent_process_serves_and_stops_its_dnsmasq_on_sigterm(
    world: DhcpWorld, tmp_path: Path
) -> None:
    import subprocess
    import sys

    address = world.spawn("web-1", "acme", "web", "n1")
    config = write_config(world, tmp_path)
    argv = [sys.executable, "-m", "metalnet", "--config", str(config), "dhcp-agent"]
    agent = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    pid_file = Path(world.settings.dhcp_state_dir) / f"vlan{VLAN}" / "dnsmasq.pid"
    try:
        wait_for(lambda: _pid(pid_file) is not None, "the agent's dnsmasq")
        lease = world.dhcp(world.client(VLAN, MAC["n1"]))
        assert lease is not None and str(lease.address) == address
        dnsmasq = _pid(pid_file)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=30)
    assert agent.returncode == 0, stderr
    assert not Path(f"/proc/{dnsmasq}").exists()


def test_serve_runs_the_manager_and_counts_a_restart_in_metrics(
    world: DhcpWorld, tmp_path: Path, cli
) -> None:
    """`metalnet serve` with DHCP interfaces configured serves DHCP; a killed dnsmasq
    comes back and `/metrics` counts it."""
    import socket
    import subprocess
    import sys

    import httpx

    world.spawn("web-1", "acme", "web", "n1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(world, tmp_path)
    config.write_text(config.read_text() + f'controller_listen = "127.0.0.1:{port}"\n')
    token = cli("--config", str(config), "token", "create", "scraper", "--admin").stdout.strip()
    argv = [sys.executable, "-m", "metalnet", "--config", str(config), "serve"]
    serve = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    pid_file = Path(world.settings.dhcp_state_dir) / f"vlan{VLAN}" / "dnsmasq.pid"
    sample = f'metalnet_dhcp_server_restarts_total{{network="vlan{VLAN}"}} 1.0'

    def metrics() -> str:
        try:
            headers = {"Authorization": f"Bearer {token}"}
            return httpx.get(f"http://127.0.0.1:{port}/metrics", headers=headers).text
        except httpx.TransportError:
            return ""

    try:
        wait_for(lambda: _pid(pid_file) is not None, "serve's dnsmasq")
        first = _pid(pid_file)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: sample in metrics(), "the restart in /metrics")
        wait_for(lambda: _pid(pid_file) not in (None, first), "a new pid file")
        assert world.dhcp(world.client(VLAN, MAC["n1"])) is not None
    finally:
        serve.send_signal(signal.SIGTERM)
        _, stderr = serve.communicate(timeout=30)
    assert serve.returncode == 0, stderr
    assert "dnsmasq exited (status -9), restarting it" in stderr


def test_a_killed_agents_dnsmasq_is_replaced_by_the_next_agent(
    world: DhcpWorld, tmp_path: Path
) -> None:
    """dnsmasq outlives an agent killed with -9; the next agent stops it and serves on
    with the same lease file, instead of failing on a busy interface."""
    import subprocess
    import sys

    world.spawn("web-1", "acme", "web", "n1")
    config = write_config(world, tmp_path)
    argv = [sys.executable, "-m", "metalnet", "--config", str(config), "dhcp-agent"]
    first = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    pid_file = Path(world.settings.dhcp_state_dir) / f"vlan{VLAN}" / "dnsmasq.pid"
    try:
        wait_for(lambda: _pid(pid_file) is not None, "the first agent's dnsmasq")
        orphan = _pid(pid_file)
        client = world.client(VLAN, MAC["n1"])
        leased = world.dhcp(client)
        assert leased is not None
    finally:
        first.kill()
        first.wait(10)
    assert Path(f"/proc/{orphan}").exists()  # the orphan serves on, unmanaged

    second = world.manager()
    second.sync()

    assert not Path(f"/proc/{orphan}").exists()
    assert second.servers[VLAN].alive()
    leases = (Path(world.settings.dhcp_state_dir) / f"vlan{VLAN}" / "leases").read_text()
    assert f"{MAC['n1']} {leased.address}" in leases
    assert world.dhcp(client) == leased


def test_two_managers_never_share_a_state_directory(world: DhcpWorld) -> None:
    world.spawn("web-1", "acme", "web", "n1")
    world.manager().sync()

    with pytest.raises(DhcpHostError, match=r"another DHCP manager \(serve or dhcp-agent\) runs"):
        world.manager().sync()
