"""The configuration tree and its text formats, without a network."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


# ------------------------------------------------------------------ round trips, as a property

NAMES = st.sampled_from(["ge-0/0/1", "ge-0/0/2", "xe-0/0/3", "ae0", "<ge-*>", "ge-0/0/[1-4]"])
VLANS = st.sampled_from(["v10", "v20", "default", "30"])
VLAN_IDS = st.integers(min_value=1, max_value=4094)


@st.composite
def configs(draw: st.DrawFn) -> tree.Element:
    """Configurations with the statements metalnet meets: access/trunk ports, native
    VLANs, deactivated statements, groups with wildcards, interface ranges."""

    def inactive() -> str:
        return "inactive: " if draw(st.booleans()) else ""

    def port_body() -> str:
        mode = draw(st.sampled_from(["", "interface-mode access; ", "interface-mode trunk; "]))
        members = draw(st.lists(VLANS, max_size=3, unique=True))
        vlan = f"{inactive()}vlan {{ members [ {' '.join(members)} ]; }} " if members else ""
        native = f"{inactive()}native-vlan-id 5; " if draw(st.booleans()) else ""
        return f"{native}unit 0 {{ family ethernet-switching {{ {mode}{vlan}}} }}"

    ports = draw(st.lists(NAMES, max_size=3, unique=True))
    interfaces = "".join(f'{inactive()}"{p}" {{ {port_body()} }} ' for p in ports)
    if draw(st.booleans()):
        interfaces += (
            "interface-range r { member ge-0/0/5; member-range ge-0/0/6 to ge-0/0/9; "
            f"{port_body()} }} "
        )
    groups = f'groups {{ g {{ interfaces {{ "<ge-*>" {{ {port_body()} }} }} }} }} apply-groups g; '
    vlans = "".join(f"{inactive()}v{n} {{ vlan-id {n}; }} " for n in draw(st.sets(VLAN_IDS)))
    text_ = (groups if draw(st.booleans()) else "") + f"interfaces {{ {interfaces}}} "
    return text.parse_text(text_ + (f"vlans {{ {vlans}}}" if vlans else ""))


@settings(max_examples=150, deadline=None)
@given(config=configs())
def test_text_and_set_formats_round_trip(config) -> None:
    assert tree.same(text.parse_text(text.render_text(config)), config)
    rebuilt = tree.new_config()
    for fragment in text.parse_set(text.render_set(config)):
        only_activation = fragment.get("activation") == "activation"
        tree.edit(rebuilt, fragment, default_op="none" if only_activation else "merge")
    assert tree.same(rebuilt, config)


@settings(max_examples=100, deadline=None)
@given(config=configs(), victim=NAMES)
def test_delete_of_one_entry_leaves_the_others(config, victim: str) -> None:
    before = [i.findtext("name") for i in config.iterfind("interfaces/interface")]
    for fragment in text.parse_set(f'delete interfaces "{victim}"\ndelete vlans v10'):
        tree.edit(config, fragment)
    assert [i.findtext("name") for i in config.iterfind("interfaces/interface")] == [
        n for n in before if n != victim
    ]
    assert "v10" not in [v.findtext("name") for v in config.iterfind("vlans/vlan")]
