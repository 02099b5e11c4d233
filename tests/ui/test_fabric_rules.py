"""The fabric's pure rules: what a VLAN is to a caller, and the front panel's order."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from metalnet.api.fabric import front_panel_key, port_in
from metalnet.config import load_settings

SETTINGS = dataclasses.replace(load_settings(None, "sqlite://"), service_vlan=10, parking_vlan=4000)
vlans = st.integers(min_value=1, max_value=4094)


def network(project: str, name: str = "net") -> SimpleNamespace:
    return SimpleNamespace(project=SimpleNamespace(name=project), name=name)


@given(vlan=vlans, visible=st.dictionaries(st.integers(100, 3999), st.sampled_from("ab")))
def test_a_vlan_is_exactly_one_thing_and_only_visible_projects_are_named(vlan, visible) -> None:
    networks = {v: network(p) for v, p in visible.items()}
    what = port_in(vlan, SETTINGS, networks)
    if vlan == 10:
        assert what == {"kind": "service"}
    elif vlan == 4000:
        assert what == {"kind": "parking"}
    elif vlan in visible:
        assert what == {"kind": "project", "project": visible[vlan], "network": "net"}
    else:  # another project's VLAN, or one metalnet does not own: named by nobody
        assert what == {"kind": "unknown"}


def test_an_unconfigured_port_is_unknown() -> None:
    assert port_in(None, SETTINGS, {}) == {"kind": "unknown"}


@given(st.lists(st.integers(0, 99), unique=True))
def test_ports_are_in_front_panel_order(numbers) -> None:
    names = [f"ge-0/0/{n}" for n in numbers]
    assert [int(n.rsplit("/", 1)[1]) for n in sorted(names, key=front_panel_key)] == sorted(numbers)
