"""An IPv6 router that routes nothing, run inside the root-mode lab's service namespace.

Why the lab needs one: the iPXE in Debian 12's NIC ROMs (ipxe-qemu
1.0.0+git-20190125.36a4c85) configures a NIC with every configurator at once, DHCPv4
and IPv6 router discovery, and "Configuring (net0 ...)" ends only when all of them
have (src/usr/ifmgmt.c, ifconf). Router discovery sends Router Solicitations on a
retry timer with iPXE's default limits, 1/4 s doubling up to 10 s
(src/net/ndp.c, start_ipv6conf; src/include/ipxe/retry.h), so on a link with no IPv6
router it gives up only after about 16 s, long after DHCPv4 answered. Any Router
Advertisement ends it at once (ndp.c, ipv6conf_rx_router_advertisement); newer iPXE
caps the wait at 3 s (IPV6CONF_MAX_TIMEOUT).

The advertisement this sends offers nothing (RFC 4861, 4.2): router lifetime 0 (not a
default router), no prefix (no address to configure), M and O flags clear (no
DHCPv6). Nothing on the service network gains an IPv6 address or route from it; the
same helps a real service network whose iPXE is this old (docs/boot.md).

Usage: python -m metalnet.sim.lab.netns.router_advert INTERFACE
(prints READY once it listens; answers each Router Solicitation on INTERFACE).
"""

from __future__ import annotations

import socket
import struct
import sys

READY = "router advertisements ready"
ALL_ROUTERS = "ff02::2"
ALL_NODES = "ff02::1"
ROUTER_SOLICITATION, ROUTER_ADVERTISEMENT = 133, 134
NDP_HOP_LIMIT = 255  # RFC 4861, 6.1.2: a receiver drops an RA sent with any other
# Type, code, checksum (the kernel fills it for ICMPv6 raw sockets, RFC 3542, 3.1),
# current hop limit, flags (M, O clear), router lifetime 0, reachable time, retrans timer.
ADVERTISEMENT = struct.pack("!BBHBBHII", ROUTER_ADVERTISEMENT, 0, 0, 0, 0, 0, 0, 0)


def serve(interface: str) -> None:
    """Answer every Router Solicitation on `interface` with ADVERTISEMENT, forever."""
    index = socket.if_nametoindex(interface)
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        group = socket.inet_pton(socket.AF_INET6, ALL_ROUTERS) + struct.pack("@I", index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, NDP_HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        print(READY, flush=True)
        while True:
            message = sock.recv(1500)
            if message[:1] == bytes([ROUTER_SOLICITATION]):
                sock.sendto(ADVERTISEMENT, (ALL_NODES, 0, 0, index))


def main(argv: list[str] | None = None) -> None:
    (interface,) = argv if argv is not None else sys.argv[1:]
    serve(interface)


if __name__ == "__main__":
    main()
