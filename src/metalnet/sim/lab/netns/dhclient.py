"""A real DHCP client (busybox udhcpc) run inside a node's namespace.

udhcpc's stock hook scripts rewrite /etc/resolv.conf, and network namespaces share
/etc with the host, so the lab uses its own hook: it touches only the node's NIC
and prints the lease in a line the lab parses.
"""

from __future__ import annotations

import ipaddress
import math
import subprocess
from pathlib import Path

from metalnet.sim.lab.netns.endpoints import NodeEndpoint
from metalnet.sim.lab.netns.system import in_netns, tool

LEASE_MARKER = "metalnet-lease"
HOOK_SCRIPT = f"""#!/bin/sh
# metalnet netlab hook for busybox udhcpc: configures only "$interface" in the
# node's namespace and never touches /etc/resolv.conf (namespaces share /etc).
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set dev "$interface" up
        ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/$mask" dev "$interface"
        if [ -n "$router" ]; then
            ip route replace default via "${{router%% *}}" dev "$interface"
        fi
        echo "{LEASE_MARKER} $ip/$mask"
        ;;
esac
exit 0
"""


def write_hook(directory: Path) -> Path:
    """Install the hook script in the lab's work directory and return its path."""
    path = directory / "udhcpc-hook.sh"
    path.write_text(HOOK_SCRIPT)
    path.chmod(0o755)
    return path


def request_lease(node: NodeEndpoint, hook: Path, timeout: float) -> ipaddress.IPv4Address | None:
    """Ask for a lease on the node's NIC; the address it got, or None if none came.

    The hook flushes old addresses first (udhcpc's `deconfig`), so a node that gets
    no lease is left without an IPv4 address rather than with a stale one.
    """
    attempts = max(1, math.ceil(timeout))  # one DISCOVER per second
    argv = [tool("busybox"), "udhcpc", "-i", node.nic, "-f", "-q", "-n"]
    argv += ["-t", str(attempts), "-T", "1", "-s", str(hook)]
    try:
        result = subprocess.run(
            in_netns(node.netns, argv),
            capture_output=True,
            text=True,
            timeout=attempts + 2,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    leases = [
        line.split()[1] for line in result.stdout.splitlines() if line.startswith(LEASE_MARKER)
    ]
    if result.returncode != 0 or not leases:
        return None
    return ipaddress.IPv4Interface(leases[-1]).ip
