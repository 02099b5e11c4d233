"""Which host interface serves which VLAN, and the host commands around it.

The operator creates the VLAN interfaces (`eth1.100`, `br-100`...); metalnet only
names them (a template or an explicit map from the configuration), checks that
they exist, and puts each network's DHCP server address on its interface, because
dnsmasq answers on an interface only for a subnet that interface has an address
in. With `netns` set, the interfaces live in that network namespace and dnsmasq
runs there too (keeping tenant VLANs away from the host's own stack).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from metalnet.config import Settings
from metalnet.errors import MetalnetError

COMMAND_TIMEOUT_SECONDS = 10.0
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
PACKAGE = {"ip": "iproute2", "dnsmasq": "dnsmasq-base", "dhcp_release": "dnsmasq-utils"}


class DhcpHostError(MetalnetError):
    """This host cannot serve a network: an interface or a program is missing, or a
    command failed. The message says which and what to do."""


def program(name: str) -> str:
    """Absolute path of a host program, also when /usr/sbin is not on PATH."""
    found = shutil.which(name) or shutil.which(name, path=SBIN_PATH)
    if found is None:
        package = PACKAGE.get(name, name)
        raise DhcpHostError(f"{name} is not installed (Debian/Ubuntu: apt-get install {package})")
    return found


@dataclass(frozen=True)
class DhcpInterfaces:
    """The configured mapping VLAN -> interface name, and where those interfaces live."""

    template: str = ""
    explicit: Mapping[int, str] = field(default_factory=dict)
    netns: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> DhcpInterfaces:
        return cls(settings.dhcp_interface, settings.dhcp_interfaces, settings.dhcp_netns)

    def name_for(self, vlan: int) -> str:
        """The interface serving `vlan`: the explicit map first, then the template."""
        if vlan in self.explicit:
            return self.explicit[vlan]
        if self.template:
            return self.template.format(vlan=vlan)
        raise DhcpHostError(
            f"no DHCP interface configured for VLAN {vlan}: set dhcp_interface "
            "(e.g. 'eth1.{vlan}') or add it to dhcp_interfaces"
        )

    def check(self, name: str, vlan: int) -> None:
        """Refuse, in one line, an interface this host does not have."""
        if name not in self._links():
            where = f" in network namespace {self.netns}" if self.netns else ""
            raise DhcpHostError(
                f"interface {name} for VLAN {vlan} does not exist{where}: create it "
                f"(e.g. an 802.1Q link or a bridge on the VLAN); metalnet does not create it"
            )

    def ensure_address(self, name: str, address: ipaddress.IPv4Interface) -> None:
        """Put the DHCP server's address on the interface unless it is there already."""
        if address not in self.addresses(name):
            self.ip("addr", "add", str(address), "dev", name)
        self.ip("link", "set", name, "up")

    def remove_address(self, name: str, address: ipaddress.IPv4Interface) -> None:
        """Take the server's address off again (the interface itself stays)."""
        if name in self._links() and address in self.addresses(name):
            self.ip("addr", "del", str(address), "dev", name)

    def addresses(self, name: str) -> list[ipaddress.IPv4Interface]:
        """The IPv4 addresses (with prefix) the interface holds."""
        entries = json.loads(self.ip("-j", "-4", "addr", "show", "dev", name) or "[]")
        return [
            ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
            for entry in entries
            for info in entry.get("addr_info", [])
        ]

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` as it must run to see the interfaces (inside `netns` when set)."""
        if not self.netns:
            return list(argv)
        return [program("ip"), "netns", "exec", self.netns, *argv]

    def run(self, argv: Sequence[str]) -> str:
        """Run a host command next to the interfaces; its stdout, or DhcpHostError."""
        return _run(self.command(argv))

    def ip(self, *args: str) -> str:
        """`ip ARGS` in the interfaces' namespace (`ip -n`: no new mount namespace)."""
        return _run([program("ip"), *(["-n", self.netns] if self.netns else []), *args])

    def _links(self) -> set[str]:
        return {entry["ifname"] for entry in json.loads(self.ip("-j", "link", "show") or "[]")}


def _run(argv: Sequence[str]) -> str:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False
    )
    if result.returncode != 0:
        raise DhcpHostError(f"{' '.join(argv)}: {result.stderr.strip() or 'failed'}")
    return result.stdout
