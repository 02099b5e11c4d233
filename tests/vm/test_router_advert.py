"""The VM lab's IPv6 router that routes nothing (metalnet.sim.lab.netns.router_advert),
over a real bridge: a Router Solicitation sent from a node's namespace, as iPXE sends
it, is answered at once with an advertisement that offers no route, prefix or DHCPv6
(RFC 4861, 4.2), which is what ends iPXE's wait for an IPv6 router."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from netns.netns_env import netns_marks

from metalnet.sim.lab.netns import NetLab, router_advert

pytestmark = netns_marks()
VLAN = 10
DEADLINE_SECONDS = 10.0  # generous: a busy 2-core machine; an answer takes milliseconds
# Sent from the node: one Router Solicitation to all routers, then the first
# advertisement's bytes (hex) and the hop limit it came with (RFC 4861 6.1.2: 255).
SOLICIT = """
import socket, struct, sys
nic, deadline = sys.argv[1], float(sys.argv[2])
index = socket.if_nametoindex(nic)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, nic.encode())
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
s.settimeout(deadline)
s.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0]), ("ff02::2", 0, 0, index))
while True:
    message, ancillary, _, _ = s.recvmsg(1500, socket.CMSG_SPACE(4))
    if message[0] == 134:
        (hops,) = struct.unpack("@i", ancillary[0][2])
        print(message.hex(), hops)
        break
"""


def test_a_router_solicitation_gets_an_advertisement_that_offers_nothing() -> None:
    lab = NetLab()
    lab.start()
    try:
        service = lab.add_host_endpoint(VLAN, "10.10.0.2/24", "service")
        node = lab.add_node("n1", "52:54:00:00:00:01")
        lab.set_port_vlan(node, VLAN)
        for endpoint in (service, node):  # IPv6 link-local addresses need DAD first
            _wait_for_link_local(lab, endpoint.netns, endpoint.nic)
        advertise = [sys.executable, "-m", "metalnet.sim.lab.netns.router_advert", service.nic]
        router = lab.run_in(service, advertise, stdout=subprocess.PIPE, text=True)
        try:
            assert router.stdout.readline().strip() == router_advert.READY
            solicit = [sys.executable, "-c", SOLICIT, node.nic, str(DEADLINE_SECONDS)]
            answer = lab.run_in(node, solicit, stdout=subprocess.PIPE, text=True)
            out, _ = answer.communicate(timeout=DEADLINE_SECONDS + 5)
        finally:
            router.kill()
            router.wait()
        assert answer.returncode == 0
        message, hops = out.split()
        advertisement = bytes.fromhex(message)
        assert advertisement[0] == router_advert.ROUTER_ADVERTISEMENT
        assert advertisement[5] & 0xC0 == 0  # M and O clear: no DHCPv6
        assert advertisement[6:8] == b"\0\0"  # router lifetime 0: not a default router
        assert len(advertisement) == 16  # no options: no prefix to configure
        assert int(hops) == 255
    finally:
        lab.close()


def _wait_for_link_local(lab: NetLab, netns: str, nic: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        shown = subprocess.run(
            ["ip", "-n", netns, "-6", "addr", "show", "dev", nic, "scope", "link"],
            capture_output=True,
            text=True,
        ).stdout
        if "fe80::" in shown and "tentative" not in shown:
            return
        time.sleep(0.1)
    pytest.fail(f"{nic} in {netns} has no usable IPv6 link-local address")
