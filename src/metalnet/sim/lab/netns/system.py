"""Thin, checked wrappers around the host tools the lab drives (`ip`, sysctl files).

Every command is an argument list; values come from the lab's own generated names
or from validated input, never from a shell string.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

COMMAND_TIMEOUT_SECONDS = 10.0
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
APT_PACKAGE = {"ip": "iproute2", "dnsmasq": "dnsmasq", "busybox": "busybox", "ping": "iputils-ping"}


class NetLabError(RuntimeError):
    """The lab could not build, probe or tear down part of its data plane."""


class NetLabNeedsRoot(NetLabError, PermissionError):
    """The lab was started by a non-root user: namespaces and bridges need root."""


class ToolMissing(NetLabError):
    """A host program the lab needs is not installed; the message names its package."""


class CommandFailed(NetLabError):
    """A host command exited non-zero; carries its argv and stderr."""

    def __init__(self, argv: Sequence[str], stderr: str) -> None:
        self.argv = list(argv)
        self.stderr = stderr
        super().__init__(f"{' '.join(argv)}: {stderr or 'failed'}")


def require_root() -> None:
    """Refuse early, before anything is created, when not running as root."""
    if os.geteuid() != 0:
        raise NetLabNeedsRoot(
            "the network-namespace lab needs root: it creates network namespaces, bridges "
            "and veth pairs (run it as root, e.g. `sudo metalnet demo --netns`)"
        )


def tool(name: str) -> str:
    """Absolute path of a host program, also when /usr/sbin is missing from PATH."""
    found = shutil.which(name) or shutil.which(name, path=SBIN_PATH)
    if found is None:
        package = APT_PACKAGE.get(name, name)
        raise ToolMissing(f"{name} is not installed (Debian/Ubuntu: apt-get install {package})")
    return found


def run(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT_SECONDS) -> str:
    """Run a command to completion and return its stdout; raise CommandFailed otherwise."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise CommandFailed(argv, result.stderr.strip())
    return result.stdout


def ip(*args: str) -> str:
    """Run `ip ARGS...` (iproute2)."""
    return run([tool("ip"), *args])


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside namespace `netns` (ip netns exec execs in place)."""
    return [tool("ip"), "netns", "exec", netns, *argv]


def list_netns() -> list[str]:
    """Names of all network namespaces known to iproute2."""
    text = ip("-j", "netns", "list").strip()
    return [entry["name"] for entry in json.loads(text)] if text else []


def list_links() -> list[str]:
    """Names of all interfaces in the root namespace."""
    return [entry["ifname"] for entry in json.loads(ip("-j", "link", "show"))]


def netns_pids(netns: str) -> list[int]:
    """Processes whose network namespace is `netns` (whoever started them)."""
    return [int(pid) for pid in ip("netns", "pids", netns).split()]


def harden_host_link(ifname: str) -> None:
    """Keep a root-namespace link (bridge or switch port) from talking for the host.

    The host must not be reachable through the lab: no IPv6 link-local address on
    the link, and no ARP replies for the host's own addresses (arp_ignore=8), which
    Linux would otherwise give on any interface, including a detached switch port.
    """
    settings = {
        Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"): "1",
        Path(f"/proc/sys/net/ipv4/conf/{ifname}/arp_ignore"): "8",
    }
    for path, value in settings.items():
        if path.exists():  # no IPv6 in the kernel: nothing to disable
            path.write_text(value)
