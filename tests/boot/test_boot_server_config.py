"""The service network's dnsmasq configuration: reservations for enrolled NICs,
iPXE over TFTP and HTTP, accepted by `dnsmasq --test`; bad settings name their key."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from bootworld import MACS, BootWorld, free_port, write_config
from typer.testing import CliRunner

from metalnet.boot.service import IPXE_DIR, service_network
from metalnet.cli.main import app
from metalnet.config import load_settings
from metalnet.dhcp import PxeOptions, check_config, find_dnsmasq, render_dnsmasq
from metalnet.errors import ConfigError, InputError

needs_ipxe = pytest.mark.skipif(
    not (IPXE_DIR / "undionly.kpxe").is_file() or find_dnsmasq() is None,
    reason="needs Debian's ipxe and dnsmasq packages (apt-get install ipxe dnsmasq-base)",
)


@needs_ipxe
def test_service_network_reserves_every_nic_and_chains_ipxe(world: BootWorld) -> None:
    with world.db.session() as s:
        network = service_network(s, world.db.settings, Path("/var/lib/metalnet/boot"))
    text = render_dnsmasq(network)
    lines = text.splitlines()
    assert "interface=eth0" in lines
    assert "dhcp-ignore=tag:!known" in lines  # unknown MACs: no answer
    assert f"dhcp-host={MACS['n1']},10.30.0.2,n1" in lines
    assert f"dhcp-host={MACS['n2']},10.30.0.3,n2" in lines
    url = world.db.settings.controller_url + "/v1/boot/ipxe"
    for line in (
        "enable-tftp",
        "tftp-root=/usr/lib/ipxe",
        "dhcp-match=set:ipxe,175",
        "dhcp-option=tag:ipxe,encap:175,176,1b",  # iPXE: no ProxyDHCP to wait for
        f"dhcp-boot=tag:ipxe,{url}",
        "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi,,10.30.0.1",
        "dhcp-boot=tag:!ipxe,tag:bios,undionly.kpxe,,10.30.0.1",
        "dhcp-boot=tag:!ipxe,tag:!arch,undionly.kpxe,,10.30.0.1",
    ):
        assert line in lines
    check_config(text)


@needs_ipxe
def test_boot_server_check_prints_what_dnsmasq_accepted(world: BootWorld) -> None:
    result = CliRunner().invoke(app, ["--config", str(world.config), "boot-server", "--check"])
    assert result.exit_code == 0, result.output
    assert f"dhcp-host={MACS['n1']},10.30.0.2,n1" in result.output


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"service_cidr": "10.30.0.0/33"}, "service_cidr"),
        ({"service_cidr": "10.30.0.7/24"}, "service_cidr"),
        ({"boot_server": "10.31.0.1"}, "boot_server"),
        ({"boot_server": "10.30.0.0"}, "boot_server"),
        ({"boot_server": "nine"}, "boot_server"),
        ({"service_interface": ""}, "service_interface"),
    ],
)
def test_bad_boot_settings_name_their_key(tmp_path: Path, extra: dict[str, str], key: str) -> None:
    config = write_config(tmp_path, free_port(), **extra)
    with pytest.raises(ConfigError, match=f"config key {key}"):
        load_settings(config)
    result = CliRunner().invoke(app, ["--config", str(config), "boot-server", "--check"])
    assert result.exit_code == 2
    assert f"config key {key}" in result.output


def test_boot_server_refuses_to_run_unconfigured(tmp_path: Path) -> None:
    config = tmp_path / "metalnet.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path / "x.db"}"\n')
    CliRunner().invoke(app, ["--config", str(config), "db", "upgrade"])
    result = CliRunner().invoke(app, ["--config", str(config), "boot-server", "--check"])
    assert result.exit_code == 2
    assert "config key service_interface is not set" in result.output


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ipxe_url": "http://10.30.0.1/x\ndhcp-range=0.0.0.0"}, "invalid iPXE URL"),
        ({"ipxe_url": "tftp://10.30.0.1/x"}, "invalid iPXE URL"),
        ({"efi_boot_file": "../etc/shadow"}, "invalid boot file"),
        ({"efi_boot_file": "ipxe.efi,,1.2.3.4"}, "invalid boot file"),
        ({"tftp_root": "relative/dir"}, "invalid TFTP root"),
        ({"tftp_root": "/srv/../etc"}, "invalid TFTP root"),
    ],
)
def test_boot_options_refuse_what_could_inject_dnsmasq_directives(
    fields: dict[str, str], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        PxeOptions("undionly.kpxe", IPv4Address("10.30.0.1"), **fields)  # type: ignore[arg-type]
