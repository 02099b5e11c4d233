"""The DHCP configuration keys: valid values load, a bad one is refused naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from metalnet.config import load_settings
from metalnet.dhcp.interfaces import DhcpHostError, DhcpInterfaces
from metalnet.errors import ConfigError


def load(tmp_path: Path, text: str):
    path = tmp_path / "metalnet.toml"
    path.write_text(text)
    return load_settings(path)


def test_dhcp_keys_load(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        'dhcp_interface = "eth1.{vlan}"\n'
        'dhcp_netns = "metalnet-dhcp"\n'
        'dhcp_state_dir = "/var/lib/metalnet/dhcp"\n'
        "dhcp_lease_seconds = 7200\n"
        'dhcp_dns_servers = ["192.0.2.53", "192.0.2.54"]\n'
        "dhcp_interval = 1.5\n"
        '[dhcp_interfaces]\n"100" = "br-web"\n',
    )
    interfaces = DhcpInterfaces.from_settings(settings)

    assert settings.dhcp_configured
    assert interfaces.name_for(100) == "br-web" and interfaces.name_for(2001) == "eth1.2001"
    assert settings.dhcp_dns_servers == ("192.0.2.53", "192.0.2.54")
    assert settings.dhcp_lease_seconds == 7200 and settings.dhcp_netns == "metalnet-dhcp"


def test_without_dhcp_keys_this_host_serves_no_dhcp() -> None:
    settings = load_settings(None, "sqlite://")
    assert not settings.dhcp_configured
    with pytest.raises(DhcpHostError, match="no DHCP interface configured for VLAN 100"):
        DhcpInterfaces.from_settings(settings).name_for(100)


BAD = [
    ('dhcp_interface = "eth1"', "dhcp_interface: 'eth1' must contain {vlan}"),
    ('dhcp_interface = "{vlan}{name}"', "may use only the placeholder"),
    ('dhcp_interface = "a-long-prefix.{vlan}"', "'a-long-prefix.4094' is not an interface name"),
    ('dhcp_interface = "br {vlan}"', "dhcp_interface: 'br 1' is not an interface name"),
    ('dhcp_interfaces = {"abc" = "eth1"}', "dhcp_interfaces: 'abc' is not a VLAN id"),
    ('dhcp_interfaces = {"5000" = "eth1"}', "dhcp_interfaces: 5000 is not a VLAN id"),
    ('dhcp_interfaces = {"100" = "eth1;x"}', "dhcp_interfaces: 'eth1;x' is not an interface"),
    ('dhcp_interfaces = {"100" = "eth1", "101" = "eth1"}', "one interface is named for two"),
    ('dhcp_interfaces = "eth1"', "dhcp_interfaces: 'eth1' must be a table"),
    ('dhcp_netns = "a/b"', "dhcp_netns: 'a/b' is not a network namespace name"),
    ('dhcp_state_dir = "relative/dir"', "dhcp_state_dir: 'relative/dir' must be an absolute"),
    ('dhcp_state_dir = "/var/lib/my dhcp"', "dhcp_state_dir: '/var/lib/my dhcp'"),
    ("dhcp_lease_seconds = 60", "dhcp_lease_seconds: 60 must be a whole number of seconds"),
    ('dhcp_dns_servers = ["dns.example"]', "dhcp_dns_servers: \\['dns.example'\\]"),
    ('dhcp_dns_servers = "192.0.2.53"', "dhcp_dns_servers: '192.0.2.53' must be a list"),
    ("dhcp_interval = 0", "dhcp_interval: 0 must be a positive number"),
]


@pytest.mark.parametrize(
    ("line", "message"), BAD, ids=[b[0].split(" =")[0] + str(i) for i, b in enumerate(BAD)]
)
def test_a_bad_dhcp_value_is_refused_naming_its_key(
    tmp_path: Path, line: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("{", "\\{").replace("}", "\\}")):
        load(tmp_path, line + "\n")


def test_the_cli_refuses_a_bad_dhcp_key_with_exit_code_2(cli, tmp_path: Path) -> None:
    path = tmp_path / "metalnet.toml"
    path.write_text('dhcp_interface = "eth1"\n')
    result = cli("--config", str(path), "dhcp-agent")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: config key dhcp_interface: 'eth1' must contain {vlan}, e.g. 'eth1.{vlan}'"
    ]
