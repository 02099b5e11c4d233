"""The configuration tree and its text formats, without a network."""

from __future__ import annotations

import pytest
from lxml import etree

from metalnet.sim.switch import text, tree
from metalnet.sim.switch.errors import RpcFailure

SAMPLE = """
## Last commit: 2024-01-01 00:00:00 UTC by admin
system { host-name "core sw"; }
interfaces {
    ge-0/0/0 {
        description "uplink; \\"a\\"";
        unit 0 {
            family ethernet-switching {
                interface-mode trunk;
                vlan { members [ v10 20 ]; }
            }
            family inet { address 10.0.0.1/24; }
        }
    }
    /* parked */
    ge-0/0/1 { disable; }
}
vlans { v10 { vlan-id 10; } v20 { vlan-id 20; } }
"""


def test_text_round_trips_through_render() -> None:
    config = text.parse_text(SAMPLE)
    rendered = text.render_text(config)
    assert "members [ v10 20 ];" in rendered
    assert 'description "uplink; \\"a\\"";' in rendered
    assert "family inet {" in rendered
    assert tree.same(text.parse_text(rendered), config)


def test_text_maps_to_junos_xml() -> None:
    config = text.parse_text(SAMPLE)
    iface = config.find("interfaces/interface")
    assert iface.findtext("name") == "ge-0/0/0"
    assert iface.findtext("description") == 'uplink; "a"'
    assert [m.text for m in iface.iterfind("unit/family/ethernet-switching/vlan/members")] == [
        "v10",
        "20",
    ]
    assert iface.findtext("unit/family/inet/address/name") == "10.0.0.1/24"
    assert config.find("interfaces/interface[name='ge-0/0/1']/disable") is not None


def test_set_lines_round_trip() -> None:
    config = text.parse_text(SAMPLE)
    lines = text.render_set(config)
    assert "set interfaces ge-0/0/0 unit 0 family ethernet-switching vlan members v10\n" in lines
    rebuilt = tree.new_config()
    for fragment in text.parse_set(lines):
        tree.edit(rebuilt, fragment)
    assert tree.same(rebuilt, config)


def test_set_delete_removes_one_member() -> None:
    config = text.parse_text(SAMPLE)
    (fragment,) = text.parse_set(
        "delete interfaces ge-0/0/0 unit 0 family ethernet-switching vlan members v10"
    )
    tree.edit(config, fragment)
    members = config.iterfind(".//ethernet-switching/vlan/members")
    assert [m.text for m in members] == ["20"]


@pytest.mark.parametrize(
    "bad", ["interfaces { ge-0/0/1 { disable; }", "vlans { v1 { vlan-id 1 } }", "a b c;", "x [ y ]"]
)
def test_malformed_text_is_a_syntax_error(bad: str) -> None:
    with pytest.raises(RpcFailure, match="syntax error"):
        text.parse_text(bad)


def test_merge_adds_members_replace_tag_replaces() -> None:
    base = text.parse_text(SAMPLE)
    merged, replaced = tree.copy(base), tree.copy(base)
    snippet = (
        "interfaces { ge-0/0/0 { unit 0 { family ethernet-switching {"
        " replace: vlan { members v30; } } } } }"
    )
    tree.edit(merged, text.parse_text(snippet), honour_replace=False)
    tree.edit(replaced, text.parse_text(snippet), honour_replace=True)
    members = ".//ethernet-switching/vlan/members"
    assert [m.text for m in merged.iterfind(members)] == ["v10", "20", "v30"]
    assert [m.text for m in replaced.iterfind(members)] == ["v30"]


def test_strict_edit_reports_missing_and_existing() -> None:
    config = text.parse_text(SAMPLE)
    vlan = (
        '<configuration><vlans><vlan operation="%s"><name>%s</name></vlan></vlans></configuration>'
    )
    delete = etree.fromstring(vlan % ("delete", "v99"))
    create = etree.fromstring(vlan % ("create", "v10"))
    with pytest.raises(RpcFailure) as missing:
        tree.edit(config, delete, strict=True)
    assert missing.value.errors[0].tag == "data-missing"
    with pytest.raises(RpcFailure) as exists:
        tree.edit(config, create, strict=True)
    assert exists.value.errors[0].tag == "data-exists"
    tree.edit(config, delete)  # a Junos load ignores deleting what is absent


def test_subtree_filter_selects_one_interface() -> None:
    config = text.parse_text(SAMPLE)
    flt = etree.fromstring(
        "<configuration><interfaces><interface><name>ge-0/0/1</name></interface></interfaces></configuration>"
    )
    picked = tree.subtree_filter(config, flt)
    assert [i.findtext("name") for i in picked.iterfind("interfaces/interface")] == ["ge-0/0/1"]
    assert picked.find("interfaces/interface/disable") is not None
    assert picked.find("vlans") is None
    none = etree.fromstring(
        "<configuration><interfaces><interface><name>ge-0/0/7</name></interface></interfaces></configuration>"
    )
    assert tree.subtree_filter(config, none) is None
