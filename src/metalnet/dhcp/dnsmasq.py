"""Render one network's dnsmasq configuration, and have dnsmasq itself check it.

One dnsmasq per network, bound to that network's interface only, DHCP only (DNS
off), static reservations only: a MAC that metalnet did not reserve gets no answer
at all, so a stray machine on a VLAN cannot obtain an address. The text is built
from a validated `DhcpNetwork`, never from raw strings.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from metalnet.dhcp.network import AGENT_URL_OPTION, DhcpNetwork, PxeOptions

CHECK_TIMEOUT_SECONDS = 10


class DnsmasqError(RuntimeError):
    """dnsmasq is missing, or refused a configuration; the message is dnsmasq's own."""


def find_dnsmasq() -> str | None:
    """The dnsmasq binary, also when /usr/sbin is not on a non-root user's PATH."""
    return shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")


def render_dnsmasq(net: DhcpNetwork) -> str:
    """The complete dnsmasq configuration file for `net` (ends with a newline)."""
    # Without a gateway send an empty router option, or dnsmasq would offer itself.
    router = f"option:router,{net.gateway}" if net.gateway else "option:router"
    lines = [
        f"# metalnet: DHCP for network {net.name} (VLAN {net.vlan}, {net.cidr}).",
        "# Generated from the database; edits are overwritten.",
        "port=0",  # DNS off: this dnsmasq only hands out reservations
        "bind-interfaces",
        f"interface={net.interface}",
        "dhcp-authoritative",
        f"dhcp-range={net.cidr.network_address},static,{net.cidr.netmask},{net.lease_seconds}",
        "dhcp-ignore=tag:!known",  # unknown MACs get no reply at all
        f"dhcp-option={router}",
        *_dns_lines(net),
        *(
            [f"dhcp-hostsfile={net.hosts_file}"]
            if net.hosts_file
            else (f"dhcp-host={line}" for line in _host_lines(net))
        ),
        *(_pxe_lines(net.pxe) if net.pxe else ()),
        "log-dhcp",
        *([f"log-facility={net.log_file}"] if net.log_file else ()),
        *([f"dhcp-leasefile={net.lease_file}"] if net.lease_file else ()),
    ]
    return "\n".join(lines) + "\n"


def render_hosts(net: DhcpNetwork) -> str:
    """The reservations as a `dhcp-hostsfile` (one `MAC,address,name` per line)."""
    return "".join(f"{line}\n" for line in _host_lines(net))


def _host_lines(net: DhcpNetwork) -> list[str]:
    # Keyed by MAC: the name is only what the client is told, never how it is found.
    return [f"{host.mac},{host.ip},{host.hostname}" for host in net.hosts]


def _dns_lines(net: DhcpNetwork) -> list[str]:
    """DNS servers when the network has some; with DNS off (port=0) dnsmasq names none."""
    if not net.dns_servers:
        return []
    return ["dhcp-option=option:dns-server," + ",".join(str(a) for a in net.dns_servers)]


def _pxe_lines(pxe: PxeOptions) -> list[str]:
    """Boot file and next-server (siaddr), plus the agent URL as a forced private option."""
    lines = _tftp_lines(pxe)
    if pxe.ipxe_url is None:
        lines.append(f"dhcp-boot={pxe.boot_file},,{pxe.tftp_server}")
    else:
        lines += _ipxe_lines(pxe, pxe.ipxe_url)
    if pxe.agent_url:
        # "force": PXE clients do not ask for option 224, so dnsmasq must send it anyway.
        lines.append(f'dhcp-option-force={AGENT_URL_OPTION},"{pxe.agent_url}"')
    return lines


def _tftp_lines(pxe: PxeOptions) -> list[str]:
    """dnsmasq's own read-only TFTP server, confined to `tftp_root`.

    Not `tftp-secure`: it serves only files owned by dnsmasq's user, and the iPXE
    binaries belong to root (Debian's package).
    """
    if pxe.tftp_root is None:
        return []
    return ["enable-tftp", f"tftp-root={pxe.tftp_root}"]


def _ipxe_lines(pxe: PxeOptions, url: str) -> list[str]:
    """iPXE gets the HTTP URL; a firmware PXE client gets the iPXE binary its firmware
    runs, and no binary at all when there is none for its architecture.

    iPXE identifies itself with option 175 (https://ipxe.org/howto/dhcpd). Firmware
    names its architecture in option 93 (RFC 4578 2.1; IANA "Processor Architecture
    Types"): 0 is x86 BIOS, 7 and 9 are x86-64 UEFI (edk2/OVMF sends 7). A PXE ROM
    without option 93 predates RFC 4578 and is BIOS. Any other architecture (32-bit
    or ARM UEFI, UEFI HTTP boot) gets its address only, so its firmware moves on to
    the next boot option instead of running a binary built for another one. The tag
    sets exclude each other: at most one dhcp-boot line applies to any client.

    iPXE is also told that no ProxyDHCP server will answer (no-pxedhcp, option 175.176,
    https://ipxe.org/cfg/no-pxedhcp; the line as dnsmasq's dnsmasq.conf.example writes
    it): this server gives the boot URL itself, and iPXE otherwise waits for a
    ProxyDHCP offer before it requests its address (DHCP_DISC_PROXY_TIMEOUT_SEC, 2 s,
    in iPXE's src/config/dhcp.h).
    """
    server = pxe.tftp_server
    lines = [
        "dhcp-match=set:ipxe,175",
        "dhcp-option=tag:ipxe,encap:175,176,1b",
        "dhcp-match=set:arch,option:client-arch",  # option 93 sent at all
        "dhcp-match=set:bios,option:client-arch,0",
        f"dhcp-boot=tag:ipxe,{url}",
        f"dhcp-boot=tag:!ipxe,tag:bios,{pxe.boot_file},,{server}",
        f"dhcp-boot=tag:!ipxe,tag:!arch,{pxe.boot_file},,{server}",
    ]
    if pxe.efi_boot_file:
        lines += [
            "dhcp-match=set:efi64,option:client-arch,7",
            "dhcp-match=set:efi64,option:client-arch,9",
            f"dhcp-boot=tag:!ipxe,tag:efi64,{pxe.efi_boot_file},,{server}",
        ]
    return lines


def check_config(text: str) -> None:
    """Run `dnsmasq --test` on `text`; raise DnsmasqError with dnsmasq's message if refused."""
    binary = find_dnsmasq()
    if binary is None:
        raise DnsmasqError("dnsmasq is not installed (Debian/Ubuntu: apt-get install dnsmasq)")
    with tempfile.TemporaryDirectory(prefix="metalnet-dnsmasq-") as tmp:
        path = Path(tmp) / "dnsmasq.conf"
        path.write_text(text)
        result = subprocess.run(
            [binary, "--test", f"--conf-file={path}"],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_SECONDS,
            check=False,
        )
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().replace(str(path), "<config>")
        raise DnsmasqError(f"dnsmasq refused the configuration: {message}")
