"""Host names made DHCP-safe: whatever a node or instance is called, the network's
dnsmasq still accepts its configuration (checked by `dnsmasq --test` itself)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metalnet.dhcp import DhcpHost, DhcpNetwork, check_config, find_dnsmasq, render_dnsmasq
from metalnet.dhcp.network import HOSTNAME_RE, dhcp_hostname, dhcp_hostnames

CIDR = ipaddress.IPv4Network("10.40.0.0/24")
NAMES = st.text(max_size=80)  # any Unicode: dots, spaces, newlines, commas, emoji...


def mac(index: int) -> str:
    return f"02:00:00:00:{index // 256:02x}:{index % 256:02x}"


@given(NAMES)
def test_a_cleaned_name_is_one_dns_label(name: str) -> None:
    label = dhcp_hostname(name, mac(1))
    assert HOSTNAME_RE.fullmatch(label) and label == label.lower()


@given(st.lists(NAMES, max_size=30))
def test_cleaned_names_in_one_network_are_distinct(names: list[str]) -> None:
    labels = dhcp_hostnames([(name, mac(i)) for i, name in enumerate(names)])
    assert len(set(labels)) == len(labels)
    assert all(HOSTNAME_RE.fullmatch(label) for label in labels)


@pytest.mark.skipif(find_dnsmasq() is None, reason="dnsmasq is not installed")
@settings(max_examples=40, deadline=None)
@given(st.lists(NAMES, min_size=1, max_size=20))
def test_dnsmasq_accepts_a_network_whatever_its_hosts_are_called(names: list[str]) -> None:
    macs = [mac(i) for i in range(len(names))]
    labels = dhcp_hostnames(list(zip(names, macs, strict=True)))
    pairs = enumerate(zip(macs, labels, strict=True))
    hosts = [DhcpHost(m, CIDR[10 + i], label) for i, (m, label) in pairs]
    network = DhcpNetwork("acme-web", 140, CIDR, CIDR[-2], "eth1", hosts=hosts)

    check_config(render_dnsmasq(network))  # raises with dnsmasq's message if refused


def test_names_seen_in_the_field_become_labels() -> None:
    assert dhcp_hostname("web.1", mac(1)) == "web-1"
    assert dhcp_hostname("Web Server #3", mac(1)) == "web-server-3"
    assert dhcp_hostname("...", mac(7)) == "host-020000000007"
    assert dhcp_hostnames([("web.1", mac(1)), ("web_1", mac(2))]) == ["web-1", "web-1-000002"]
