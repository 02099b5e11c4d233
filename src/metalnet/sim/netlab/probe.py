"""Reachability measured with real packets: one ICMP echo per pair, bounded in time.

A failed probe costs its whole timeout, so the matrix runs every pair at once in
threads: n endpoints cost about one timeout, not n*(n-1) of them.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from metalnet.sim.netlab.endpoints import Endpoint
from metalnet.sim.netlab.system import in_netns, ip, tool

MAX_PARALLEL_PROBES = 64
Matrix = dict[str, dict[str, bool]]


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


def matrix(endpoints: Sequence[Endpoint], timeout: float = 0.5) -> Matrix:
    """For every ordered pair (src, dst), whether src reaches any of dst's current addresses.

    Keyed by endpoint name: result[src][dst]. An endpoint without an address is
    unreachable from everyone; the diagonal is left out.
    """
    with ThreadPoolExecutor(max_workers=MAX_PARALLEL_PROBES) as pool:
        held = dict(zip(endpoints, pool.map(addresses, endpoints), strict=True))
        pairs = [(src, dst) for src in endpoints for dst in endpoints if src is not dst]
        answers = pool.map(
            lambda pair: any(reachable(pair[0], a, timeout) for a in held[pair[1]]), pairs
        )
        result: Matrix = {endpoint.name: {} for endpoint in endpoints}
        for (src, dst), answered in zip(pairs, answers, strict=True):
            result[src.name][dst.name] = answered
    return result
