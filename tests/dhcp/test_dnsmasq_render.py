"""dnsmasq configuration: what is rendered, what is refused, and what dnsmasq accepts."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalnet.dhcp import (
    DhcpHost,
    DhcpNetwork,
    DnsmasqError,
    PxeOptions,
    check_config,
    find_dnsmasq,
    render_dnsmasq,
)

needs_dnsmasq = pytest.mark.skipif(
    find_dnsmasq() is None, reason="dnsmasq is not installed (apt-get install dnsmasq)"
)
CIDR = ipaddress.IPv4Network("10.20.0.0/24")
IP = ipaddress.IPv4Address


def network(**overrides: Any) -> DhcpNetwork:
    """A valid service network; each test overrides the one field it is about."""
    fields: dict[str, Any] = {
        "name": "service",
        "vlan": 100,
        "cidr": CIDR,
        "server": IP("10.20.0.2"),
        "interface": "eth0",
        "hosts": [
            DhcpHost("02:00:00:00:00:01", IP("10.20.0.11"), "node-1"),
            DhcpHost("02-00-00-00-00-02", IP("10.20.0.12"), "node-2"),
        ],
        "pxe": PxeOptions("pxelinux.0", IP("10.20.0.2"), "http://10.20.0.3:8080/v1/agent"),
        "lease_seconds": 600,
        "log_file": Path("/var/log/metalnet/dnsmasq-service.log"),
    }
    fields.update(overrides)
    return DhcpNetwork(**fields)


def test_service_network_renders_reservations_and_pxe_options() -> None:
    lines = render_dnsmasq(network()).splitlines()

    directives = [line for line in lines if not line.startswith("#")]
    assert directives == [
        "port=0",
        "bind-interfaces",
        "interface=eth0",
        "dhcp-authoritative",
        "dhcp-range=10.20.0.0,static,255.255.255.0,600",
        "dhcp-ignore=tag:!known",
        "dhcp-option=option:router",
        "dhcp-host=02:00:00:00:00:01,10.20.0.11,node-1",
        "dhcp-host=02:00:00:00:00:02,10.20.0.12,node-2",
        "dhcp-boot=pxelinux.0,,10.20.0.2",
        'dhcp-option-force=224,"http://10.20.0.3:8080/v1/agent"',
        "log-dhcp",
        "log-facility=/var/log/metalnet/dnsmasq-service.log",
    ]


def test_project_network_gets_gateway_and_no_boot_options() -> None:
    text = render_dnsmasq(
        network(name="p1-net", pxe=None, gateway="10.20.0.1", lease_file="/tmp/m/leases")
    )

    assert "dhcp-option=option:router,10.20.0.1\n" in text
    assert "dhcp-boot" not in text and "224" not in text
    assert "dhcp-leasefile=/tmp/m/leases\n" in text


HOSTILE = [
    ({"name": "svc\nport=53"}, "network name"),
    ({"vlan": 4095}, "VLAN 4095"),
    ({"server": "10.21.0.2"}, "server address 10.21.0.2"),
    ({"server": "10.20.0.255"}, "server address 10.20.0.255"),
    ({"gateway": "10.20.0.0"}, "gateway 10.20.0.0"),
    ({"interface": "eth0\nport=53"}, "interface 'eth0\\nport=53'"),
    ({"interface": "a-very-long-name0"}, "interface 'a-very-long-name0'"),
    ({"lease_seconds": 60}, "lease time 60"),
    ({"log_file": "relative.log"}, "log file 'relative.log'"),
    ({"log_file": "/tmp/x\nconf-file=/etc/shadow"}, "log file"),
    ({"lease_file": "/tmp/../etc/passwd"}, "lease file"),
]


@pytest.mark.parametrize(("override", "named"), HOSTILE, ids=[h[1] for h in HOSTILE])
def test_hostile_network_values_are_refused_by_name(override: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("\\", "\\\\")):
        network(**override)


@pytest.mark.parametrize(
    ("mac", "ip", "hostname", "named"),
    [
        ("02:00:00:00:00:zz", "10.20.0.30", "n30", "MAC '02:00:00:00:00:zz'"),
        ("ff:ff:ff:ff:ff:ff", "10.20.0.30", "n30", "broadcast"),
        ("02:00:00:00:00:30", "not-an-ip", "n30", "'not-an-ip'"),
        ("02:00:00:00:00:30", "10.20.0.30", "n30\ndhcp-script=/bin/sh", "hostname 'n30\\\\n"),
        ("02:00:00:00:00:30", "10.20.0.30", "n30,10.20.0.31", "hostname 'n30,10.20.0.31'"),
        ("02:00:00:00:00:30", "10.20.0.30", "-n30", "hostname '-n30'"),
    ],
)
def test_hostile_host_values_are_refused_by_name(
    mac: str, ip: str, hostname: str, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        DhcpHost(mac, ip, hostname)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "named"),
    [
        (DhcpHost("02:00:00:00:00:30", IP("10.9.9.9"), "n30"), "10.9.9.9: not a host address"),
        (DhcpHost("02:00:00:00:00:01", IP("10.20.0.30"), "n30"), "duplicate reservation 02:00"),
        (DhcpHost("02:00:00:00:00:30", IP("10.20.0.11"), "n30"), "reservation 10.20.0.11"),
        (DhcpHost("02:00:00:00:00:30", IP("10.20.0.30"), "node-1"), "duplicate reservation node-1"),
        (DhcpHost("02:00:00:00:00:30", IP("10.20.0.2"), "n30"), "the DHCP server"),
    ],
)
def test_reservations_must_fit_the_subnet_and_be_unique(host: DhcpHost, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        network(hosts=[*network().hosts, host])


@pytest.mark.parametrize(
    ("boot_file", "agent_url", "named"),
    [
        ("../../etc/shadow", None, "boot file"),
        ("pxe linux.0", None, "boot file"),
        ("pxelinux.0", 'http://x/"\ndhcp-script=/bin/sh', "agent URL"),
        ("pxelinux.0", "http://10.0.0.1/a,b", "agent URL"),
        ("pxelinux.0", "file:///etc/passwd", "agent URL"),
    ],
)
def test_hostile_pxe_values_are_refused(boot_file: str, agent_url: str | None, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        PxeOptions(boot_file, IP("10.20.0.2"), agent_url)


@given(hostname=st.text(max_size=70))
def test_any_accepted_hostname_renders_as_exactly_one_line(hostname: str) -> None:
    """Whatever a user types as a name either is refused or stays one line of one host."""
    try:
        host = DhcpHost("02:00:00:00:00:30", IP("10.20.0.30"), hostname)
    except ValueError:
        return
    baseline = render_dnsmasq(network()).splitlines()
    lines = render_dnsmasq(network(hosts=[*network().hosts, host])).splitlines()
    assert len(lines) == len(baseline) + 1
    assert f"dhcp-host=02:00:00:00:00:30,10.20.0.30,{hostname.lower()}" in lines


@needs_dnsmasq
@pytest.mark.parametrize("pxe", [True, False], ids=["service", "project"])
def test_dnsmasq_accepts_what_is_rendered(pxe: bool, tmp_path: Path) -> None:
    net = network(log_file=tmp_path / "log", lease_file=tmp_path / "leases")
    check_config(render_dnsmasq(net if pxe else dataclasses.replace(net, pxe=None)))


@needs_dnsmasq
def test_check_config_reports_dnsmasqs_own_message() -> None:
    text = render_dnsmasq(network()) + "dhcp-range=nonsense\n"
    with pytest.raises(DnsmasqError, match="bad dhcp-range at line"):
        check_config(text)


def test_network_dhcp_command_renders_reservations_from_the_database(
    cli, sqlite_url, tmp_path: Path
) -> None:
    """`metalnet network dhcp`: the spawn's address reservation becomes a dhcp-host line."""
    from metalnet.config import load_settings
    from metalnet.db.engine import Database
    from metalnet.lifecycle import instances

    def run(*args: str):
        return cli("--db", sqlite_url, *args)

    assert run("db", "upgrade").exit_code == 0
    assert run("project", "create", "acme").exit_code == 0
    assert run("network", "create", "web", "-p", "acme", "--cidr", "10.20.0.0/24").exit_code == 0
    assert (
        run(
            "switch",
            "add",
            "sw",
            "--driver",
            "fake",
            "--address",
            "127.0.0.1:830",
            "--username",
            "u",
            "--password",
            "p",
        ).exit_code
        == 0
    )
    assert (
        run(
            "node",
            "add",
            "n1",
            "--mac",
            "52:54:00:00:00:01",
            "--switch",
            "sw",
            "--port",
            "eth1",
            "--bmc",
            "ipmi://127.0.0.1:623",
            "--skip-initial-erase",
        ).exit_code
        == 0
    )
    settings = dataclasses.replace(load_settings(None, sqlite_url), image_allow=("i",))
    db = Database(settings)
    with db.session() as s:
        instances.create_instance(
            s, "i1", "acme", "web", "n1", "http://i/x", "a" * 64, settings=settings
        )
    result = run("network", "dhcp", "web", "-p", "acme", "--interface", "br100")
    assert result.exit_code == 0, result.output
    assert "52:54:00:00:00:01" in result.stdout and "10.20.0.2" in result.stdout
    assert "interface=br100" in result.stdout
    bad = run("network", "dhcp", "web", "-p", "acme", "--interface", "br100;x")
    assert bad.exit_code == 2 and "br100;x" in bad.stderr
    unset = run("network", "dhcp", "web", "-p", "acme")
    assert unset.stderr == (
        "error: no DHCP interface configured for VLAN 100: set dhcp_interface "
        "(e.g. 'eth1.{vlan}') or add it to dhcp_interfaces\n"
    )
    config = tmp_path / "metalnet.toml"
    config.write_text('dhcp_interface = "eth1.{vlan}"\ndhcp_dns_servers = ["192.0.2.53"]\n')
    configured = cli(
        "--config", str(config), "--db", sqlite_url, "network", "dhcp", "web", "-p", "acme"
    )
    assert configured.exit_code == 0, configured.output
    assert "interface=eth1.100\n" in configured.stdout
    assert "dhcp-option=option:dns-server,192.0.2.53\n" in configured.stdout
