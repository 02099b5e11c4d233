"""Typed Junos configuration objects and their one renderer, in both dialects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalnet.config import load_settings
from metalnet.errors import ConfigError, InputError
from metalnet.sim.switch import text
from metalnet.switches.junos.config import (
    AccessPort,
    Dialect,
    VlanDefinition,
    member_for,
    render,
)


def _members(rendered: str) -> dict[str, list[str]]:
    config = text.parse_text(rendered)  # the simulator's parser reads it as Junos would
    return {
        i.findtext("name"): [m.text for m in i.iterfind(".//vlan/members")]
        for i in config.iterfind("interfaces/interface")
    }


def test_els_access_port_replaces_the_family_and_drops_the_native_vlan() -> None:
    rendered = render(
        [AccessPort("ge-0/0/1", "vlan100", drop_native=True), AccessPort("ge-0/0/2", "default")],
        [VlanDefinition("vlan100", 100)],
        Dialect.ELS,
    )
    assert _members(rendered) == {"ge-0/0/1": ["vlan100"], "ge-0/0/2": ["default"]}
    assert rendered.count("replace: family ethernet-switching {") == 2
    # only where a native VLAN exists: deleting an absent statement draws a warning
    assert rendered.count("delete: native-vlan-id;") == 1
    assert "interface-mode access;" in rendered and "port-mode" not in rendered
    config = text.parse_text(rendered)
    assert [v.findtext("vlan-id") for v in config.iterfind("vlans/vlan")] == ["100"]


def test_legacy_access_port_uses_port_mode() -> None:
    """Without ELS `interface-mode` is a syntax error; `port-mode access` is the statement."""
    rendered = render([AccessPort("ge-0/0/1", "vlan100", drop_native=True)], [], Dialect.LEGACY)
    assert "port-mode access;" in rendered and "interface-mode" not in rendered
    assert "native-vlan-id" not in rendered  # it lives inside the replaced family there
    assert _members(rendered) == {"ge-0/0/1": ["vlan100"]}
    assert "vlans" not in rendered


@pytest.mark.parametrize(
    ("model", "dialect"),
    [
        ("ex4200-48t", Dialect.LEGACY),
        ("EX2200-C-12T-2G", Dialect.LEGACY),
        ("qfx3500s", Dialect.LEGACY),
        ("ex4300-48t", Dialect.ELS),
        ("qfx5100-48s-6q", Dialect.ELS),
        ("ex9208", Dialect.ELS),
    ],
)
def test_dialect_follows_the_model(model: str, dialect: Dialect) -> None:
    assert Dialect.of_model(model) is dialect


def test_unsafe_existing_vlan_name_is_referenced_by_number() -> None:
    assert member_for(5, {5: 'odd"name; }'}) == "5"
    assert member_for(5, {5: "tenant-a"}) == "tenant-a"
    assert member_for(7, {}) == "vlan7"


@pytest.mark.parametrize("vlan", [0, 4095, 5000, -1, True, "abc", 1.0])
def test_vlan_ids_outside_range_are_refused(vlan: object) -> None:
    with pytest.raises(InputError, match="VLAN"):
        VlanDefinition("v", vlan)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "interface", ["ge-0/0/1 { disable; }", "ge-0/0/1;", "", "eth0", "ge-0/0/1\n"]
)
def test_access_port_refuses_a_bad_interface(interface: str) -> None:
    with pytest.raises(ValueError, match="not a Junos port name"):
        AccessPort(interface, "vlan5")


@pytest.mark.parametrize("member", ["v; }", "0", "4095", "", "a b"])
def test_access_port_refuses_a_bad_member(member: str) -> None:
    with pytest.raises(ValueError, match="cannot be rendered"):
        AccessPort("ge-0/0/1", member)


@given(
    port=st.integers(0, 47),
    vlan=st.integers(1, 4094),
    name=st.text(min_size=1, max_size=20),
    dialect=st.sampled_from(list(Dialect)),
)
def test_any_existing_name_renders_to_exactly_one_member(
    port: int, vlan: int, name: str, dialect: Dialect
) -> None:
    """Whatever the switch calls a VLAN, the text parses to one port with one member."""
    member = member_for(vlan, {vlan: name})
    rendered = render([AccessPort(f"ge-0/0/{port}", member)], [], dialect)
    assert _members(rendered) == {f"ge-0/0/{port}": [member]}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("service_vlan = 1", "config key service_vlan: VLAN 1 is the switches' default VLAN"),
        ("parking_vlan = 1", "config key parking_vlan: VLAN 1 is the switches' default VLAN"),
        ("project_vlan_range = '1-99'", "config key project_vlan_range: 1-99 includes VLAN 1"),
    ],
)
def test_vlan_1_is_never_service_parking_or_project(tmp_path, line: str, message: str) -> None:
    """A port without `members` is in VLAN 1 on Junos: VLAN 1 isolates nothing."""
    path = tmp_path / "metalnet.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


@pytest.mark.parametrize("dialect", list(Dialect))
def test_disable_is_rendered_at_the_interface_and_deleted_only_where_present(
    dialect: Dialect,
) -> None:
    rendered = render(
        [
            AccessPort("ge-0/0/1", "vlan10", enabled=False),
            AccessPort("ge-0/0/2", "vlan10", enable_at=frozenset({"interface", "unit"})),
            AccessPort("ge-0/0/3", "vlan10", enable_at=frozenset({"unit"})),
            AccessPort("ge-0/0/4", "vlan10"),
        ],
        [],
        dialect,
    )
    config = text.parse_text(rendered)  # the simulator's parser reads it as Junos would

    def at(port: str, path: str) -> list[str | None]:
        [iface] = config.xpath(f"interfaces/interface[name='{port}']")
        return [el.get("delete") for el in iface.xpath(path)]

    assert at("ge-0/0/1", "disable") == [None] and at("ge-0/0/1", "unit/disable") == []
    assert at("ge-0/0/2", "disable") == ["delete"] == at("ge-0/0/2", "unit/disable")
    assert at("ge-0/0/3", "disable") == [] and at("ge-0/0/3", "unit/disable") == ["delete"]
    assert at("ge-0/0/4", "disable") == [] == at("ge-0/0/4", "unit/disable")
    assert _members(rendered) == {f"ge-0/0/{i}": ["vlan10"] for i in range(1, 5)}
