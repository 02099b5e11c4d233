"""Reachability measured with real packets, one probe per pair, bounded in time.

Two probes: an ICMP echo (`reachable`: can the two talk IP?) and an ARP probe
(`adjacent`: do they share a broadcast domain, i.e. a VLAN?). ARP is what proves
VLAN isolation: a node whose port leaked into another VLAN usually holds no
address of that VLAN's subnet, so an ICMP echo misses the leak; an ARP probe sent
from 0.0.0.0 (RFC 5227) is answered by any host of the VLAN whatever the sender's
address. A failed probe costs its whole timeout, so the matrix runs every pair at
once in threads: n endpoints cost about one timeout, not n*(n-1) of them.
"""

from __future__ import annotations

import ipaddress
import json
import math
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from metalnet.sim.lab.netns.endpoints import Endpoint
from metalnet.sim.lab.netns.system import in_netns, ip, tool

MAX_PARALLEL_PROBES = 64
Matrix = dict[str, dict[str, bool]]
Probe = Callable[[Endpoint, "ipaddress.IPv4Address | str", float], bool]


def addresses(endpoint: Endpoint) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses the endpoint's NIC holds right now (read from the kernel)."""
    text = ip("-j", "-n", endpoint.netns, "-4", "addr", "show", "dev", endpoint.nic)
    return [
        ipaddress.IPv4Address(info["local"])
        for link in json.loads(text or "[]")
        for info in link.get("addr_info", [])
    ]


def reachable(src: Endpoint, dst_ip: ipaddress.IPv4Address | str, timeout: float = 0.5) -> bool:
    """True if one ICMP echo from `src`'s namespace to `dst_ip` is answered within `timeout`."""
    target = str(ipaddress.IPv4Address(dst_ip))
    argv = [tool("ping"), "-c", "1", "-n", "-q", "-W", f"{timeout:g}", target]
    try:
        result = subprocess.run(
            in_netns(src.netns, argv), capture_output=True, timeout=timeout + 5, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def adjacent(src: Endpoint, dst_ip: ipaddress.IPv4Address | str, timeout: float = 0.5) -> bool:
    """True if an ARP probe from `src`'s NIC for `dst_ip` is answered within `timeout`.

    busybox arping only waits whole seconds (the timeout rounded up), so coreutils
    `timeout` bounds it. In DAD mode (-D) it exits 1 on the first ARP request *or*
    reply whose sender is `dst_ip` (busybox networking/arping.c, recv_pack: "We fail,
    if receive request/reply with src_ip = tested_address"), printing "... request
    from" or "... reply from": either proves `dst_ip` is on this link (a target that
    is itself resolving a neighbour at that moment sends the request). An error such
    as a NIC that is down also exits 1, but prints neither line.
    """
    target = str(ipaddress.IPv4Address(dst_ip))
    wait = str(max(1, math.ceil(timeout)))
    arping = [tool("busybox"), "arping", "-D", "-f", "-c", "1", "-w", wait, "-I", src.nic, target]
    argv = in_netns(src.netns, [tool("timeout"), f"{timeout:g}", *arping])
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 5, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    heard = "reply from" in result.stdout or "request from" in result.stdout
    return result.returncode == 1 and heard


def matrix(endpoints: Sequence[Endpoint], timeout: float = 0.5, probe: Probe = reachable) -> Matrix:
    """For every ordered pair (src, dst), whether src reaches any of dst's current addresses.

    Keyed by endpoint name: result[src][dst]. An endpoint without an address is
    unreachable from everyone; the diagonal is left out. `probe` is `reachable`
    (ICMP) or `adjacent` (ARP).
    """
    with ThreadPoolExecutor(max_workers=MAX_PARALLEL_PROBES) as pool:
        held = dict(zip(endpoints, pool.map(addresses, endpoints), strict=True))
        pairs = [(src, dst) for src in endpoints for dst in endpoints if src is not dst]
        answers = pool.map(
            lambda pair: any(probe(pair[0], a, timeout) for a in held[pair[1]]), pairs
        )
        result: Matrix = {endpoint.name: {} for endpoint in endpoints}
        for (src, dst), answered in zip(pairs, answers, strict=True):
            result[src.name][dst.name] = answered
    return result
