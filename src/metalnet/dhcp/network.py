"""What one network's DHCP server must know, validated before anything is rendered.

The dnsmasq renderer trusts these objects completely: every field is checked here,
when the object is built, so a value that could smuggle a directive into the
configuration file (a newline in a hostname, a comma in a URL) never gets that far.
Errors are `metalnet.errors.InputError` (a ValueError) naming the bad value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metalnet.errors import InputError
from metalnet.validate import check_name, check_vlan, normalize_mac

HOSTNAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)
# Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no '/', no whitespace.
INTERFACE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
# TFTP paths and absolute file paths: no whitespace, commas, quotes or '#'.
BOOT_FILE_RE = re.compile(r"[A-Za-z0-9_.-][A-Za-z0-9_./-]{0,127}")
ABS_PATH_RE = re.compile(r"/[A-Za-z0-9_./-]{1,4095}")
URL_RE = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/%=&?+-]*)?")
MIN_LEASE_SECONDS = 120  # dnsmasq refuses shorter leases
AGENT_URL_OPTION = 224  # first site-private DHCP option (RFC 2132 reserves 224-254)


def check_address(value: object, cidr: ipaddress.IPv4Network, what: str) -> ipaddress.IPv4Address:
    """An IPv4 host address inside `cidr`, neither its network nor its broadcast address."""
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise InputError(f"invalid {what} {value!r}: not an IPv4 address") from None
    if address not in cidr or address in (cidr.network_address, cidr.broadcast_address):
        raise InputError(f"invalid {what} {address}: not a host address of {cidr}")
    return address


def check_hostname(value: object) -> str:
    """One DNS label (RFC 1123): what a DHCP client may be told its name is."""
    if not isinstance(value, str) or not HOSTNAME_RE.fullmatch(value):
        raise InputError(
            f"invalid hostname {value!r}: use 1-63 letters, digits and '-', "
            "not starting or ending with '-'"
        )
    return value.lower()


def dhcp_hostname(name: str, mac: str) -> str:
    """A DHCP-safe host name for `name`: one lower-case DNS label, never empty.

    Node and instance names may hold dots, underscores or anything an older release
    accepted; dnsmasq takes a dotted name as a domain and refuses the whole file on
    one bad name. Runs of other characters become one '-'; an empty result falls
    back to the MAC, so every host keeps a name and hosts stay keyed by MAC.
    """
    label = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].rstrip("-")
    return label or "host-" + normalize_mac(mac).replace(":", "")


def dhcp_hostnames(names: Sequence[tuple[str, str]]) -> list[str]:
    """DHCP-safe names for (name, MAC) pairs, distinct within one network.

    Two names can clean up to the same label (`web.1`, `web_1`); the later one gets
    its MAC's last three octets appended (then a counter), so no reservation is
    dropped for a name.
    """
    taken: set[str] = set()
    result = []
    for name, mac in names:
        base = label = dhcp_hostname(name, mac)
        suffix = normalize_mac(mac).replace(":", "")[6:]
        tries = 0
        while label in taken:
            tries += 1
            tail = suffix if tries == 1 else f"{suffix}-{tries}"
            label = f"{base[: 62 - len(tail)]}-{tail}"
        taken.add(label)
        result.append(label)
    return result


def check_interface(value: object) -> str:
    """A Linux interface name dnsmasq can bind to (1-15 safe characters)."""
    if not isinstance(value, str) or not INTERFACE_RE.fullmatch(value):
        raise InputError(f"invalid interface {value!r}: use 1-15 characters A-Z a-z 0-9 _ . -")
    return value


def check_path(value: object, what: str) -> Path:
    """An absolute path made of characters that need no quoting in dnsmasq's file."""
    text = str(value) if isinstance(value, str | Path) else ""
    if not ABS_PATH_RE.fullmatch(text) or "/../" in f"{text}/":
        raise InputError(f"invalid {what} {value!r}: use an absolute path of A-Z a-z 0-9 _ . / -")
    return Path(text)


@dataclass(frozen=True)
class DhcpHost:
    """One static reservation: the node with this MAC always gets this address and name.

    Built from user input (strings are fine); the MAC is normalised to lower-case
    colon form. Whether the address belongs to the subnet is the network's check.
    """

    mac: str
    ip: ipaddress.IPv4Address
    hostname: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", normalize_mac(self.mac))
        object.__setattr__(self, "hostname", check_hostname(self.hostname))
        object.__setattr__(self, "ip", _check_ip(self.ip, f"address for host {self.hostname}"))


@dataclass(frozen=True)
class PxeOptions:
    """Network-boot options handed out on the service network only.

    `agent_url` tells the provisioning ramdisk where the controller's agent endpoint
    is; it travels as site-private option 224 so no standard option is overloaded.

    With `ipxe_url`, firmware PXE ROMs get an iPXE binary over TFTP (`boot_file` for
    BIOS, `efi_boot_file` for x86-64 UEFI; other firmware gets none) from dnsmasq's
    own TFTP server rooted at `tftp_root`, and iPXE itself (which sends option 175)
    gets the HTTP URL instead, so the chain firmware -> iPXE -> HTTP ends after one
    extra hop.
    """

    boot_file: str
    tftp_server: ipaddress.IPv4Address
    agent_url: str | None = None
    ipxe_url: str | None = None
    efi_boot_file: str | None = None
    tftp_root: Path | None = None

    def __post_init__(self) -> None:
        for boot_file in (self.boot_file, self.efi_boot_file):
            if boot_file is not None:
                _check_boot_file(boot_file)
        object.__setattr__(self, "tftp_server", _check_ip(self.tftp_server, "TFTP server"))
        for what, url in (("agent URL", self.agent_url), ("iPXE URL", self.ipxe_url)):
            if url is not None and not URL_RE.fullmatch(url):
                raise InputError(
                    f"invalid {what} {url!r}: expected http(s)://HOST[:PORT]/PATH "
                    "without spaces, quotes, commas or '#'"
                )
        if self.tftp_root is not None:
            object.__setattr__(self, "tftp_root", check_path(self.tftp_root, "TFTP root"))


def _check_boot_file(value: str) -> None:
    if not BOOT_FILE_RE.fullmatch(value) or ".." in value.split("/"):
        raise InputError(
            f"invalid boot file {value!r}: use a relative TFTP path of "
            "A-Z a-z 0-9 _ . / - (at most 128 characters)"
        )


@dataclass(frozen=True)
class DhcpNetwork:
    """One network's DHCP service: its subnet, its server and its static reservations.

    Reservations are checked against the subnet and against each other, because two
    reservations for one MAC or one address would make dnsmasq answer unpredictably.
    With `hosts_file` the reservations live in a file of their own that dnsmasq
    re-reads on SIGHUP, so they change without a restart.
    """

    name: str
    vlan: int
    cidr: ipaddress.IPv4Network
    server: ipaddress.IPv4Address
    interface: str
    hosts: Sequence[DhcpHost] = ()
    gateway: ipaddress.IPv4Address | None = None
    pxe: PxeOptions | None = None
    lease_seconds: int = 3600
    dns_servers: Sequence[ipaddress.IPv4Address] = ()
    log_file: Path | None = None
    lease_file: Path | None = None
    hosts_file: Path | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "network name")
        check_vlan(self.vlan)
        if not isinstance(self.cidr, ipaddress.IPv4Network):
            raise InputError(f"invalid CIDR {self.cidr!r}: expected an ipaddress.IPv4Network")
        self._set("server", check_address(self.server, self.cidr, "server address"))
        if self.gateway is not None:
            self._set("gateway", check_address(self.gateway, self.cidr, "gateway"))
        check_interface(self.interface)
        if isinstance(self.lease_seconds, bool) or not isinstance(self.lease_seconds, int):
            raise InputError(f"invalid lease time {self.lease_seconds!r}: not a number of seconds")
        if self.lease_seconds < MIN_LEASE_SECONDS:
            raise InputError(
                f"invalid lease time {self.lease_seconds}: at least {MIN_LEASE_SECONDS} seconds"
            )
        self._set("dns_servers", tuple(_check_ip(a, "DNS server") for a in self.dns_servers))
        for attribute in ("log_file", "lease_file", "hosts_file"):
            value = getattr(self, attribute)
            if value is not None:
                self._set(attribute, check_path(value, attribute.replace("_", " ")))
        self._set("hosts", self._check_hosts())

    def _set(self, attribute: str, value: object) -> None:
        object.__setattr__(self, attribute, value)

    def _check_hosts(self) -> tuple[DhcpHost, ...]:
        """Every reservation inside the subnet; no MAC, address or name reserved twice."""
        taken: dict[str, str] = {str(self.server): "the DHCP server"}
        if self.gateway is not None:
            taken[str(self.gateway)] = "the gateway"
        for host in self.hosts:
            if not isinstance(host, DhcpHost):
                raise InputError(f"invalid host {host!r}: expected a DhcpHost")
            check_address(host.ip, self.cidr, f"address for host {host.hostname}")
            for key in (host.mac, str(host.ip), host.hostname):
                if key in taken:
                    raise InputError(
                        f"duplicate reservation {key} in network {self.name}: "
                        f"host {host.hostname} and {taken[key]}"
                    )
                taken[key] = f"host {host.hostname}"
        return tuple(self.hosts)


def _check_ip(value: object, what: str) -> ipaddress.IPv4Address:
    """Any IPv4 address (e.g. a TFTP server outside the subnet, reached via the gateway)."""
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise InputError(f"invalid {what} {value!r}: not an IPv4 address") from None
