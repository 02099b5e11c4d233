"""Rendering port changes into Junos text: only validated values, VLANs replaced."""

from __future__ import annotations

import pytest

from metalnet.sim.switch import text
from metalnet.switches.base import PortChange
from metalnet.switches.render import check_vlan, render_port_changes


def test_renders_replaced_membership_and_missing_vlans_only() -> None:
    rendered = render_port_changes(
        [PortChange("ge-0/0/1", 100), PortChange("ge-0/0/2", 1)], {1: "default"}
    )
    config = text.parse_text(rendered)  # the simulator's parser reads it as Junos would
    members = {
        i.findtext("name"): [m.text for m in i.iterfind(".//vlan/members")]
        for i in config.iterfind("interfaces/interface")
    }
    assert members == {"ge-0/0/1": ["vlan100"], "ge-0/0/2": ["default"]}
    assert [v.findtext("name") for v in config.iterfind("vlans/vlan")] == ["vlan100"]
    assert rendered.count("replace: vlan {") == 2
    assert "interface-mode access;" in rendered


def test_unsafe_existing_vlan_name_is_referenced_by_number() -> None:
    rendered = render_port_changes([PortChange("ge-0/0/1", 5)], {5: 'odd"name; }'})
    assert "members 5;" in rendered
    assert "odd" not in rendered and "vlans" not in rendered


@pytest.mark.parametrize("vlan", [0, 4095, 5000, -1, True, "100", 1.0])
def test_vlan_ids_outside_range_are_refused(vlan: object) -> None:
    with pytest.raises(ValueError, match="1-4094"):
        check_vlan(vlan)


def test_renderer_refuses_non_token_interface() -> None:
    with pytest.raises(ValueError, match="cannot be rendered"):
        render_port_changes([PortChange("ge-0/0/1 { disable; }", 5)], {})
