"""Junos rules a client meets on a real switch, over ncclient's Junos handler.

Each test names the Juniper page (or RFC) the rule comes from; the simulator's
modules cite the same sources.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lxml import etree
from ncclient.operations import RaiseMode, RPCError

from metalnet.sim.switch import SimSwitch

DATA = Path(__file__).parent.parent / "data" / "junos"
PORT = (
    "interfaces {{ {port} {{ unit 0 {{ family ethernet-switching {{"
    " replace: vlan {{ members {vlan}; }} }} }} }} }} vlans {{ {vlan} {{ vlan-id {vid}; }} }}"
)


def _wait(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _text(nc) -> str:
    return nc.get_configuration(format="text").xpath("//configuration-text")[0].text


# ---------------------------------------------------------------- commit warnings


def test_commit_warning_comes_with_commit_success(switch: SimSwitch, connect) -> None:
    """Junos answers some successful commits with severity-warning `<rpc-error>`s inside
    `<commit-results>`; ncclient raises on them unless told to raise on errors only."""
    switch.faults.warn_on_commit("mgd: statement deprecated; use interface-mode")
    nc = connect(switch)
    nc.load_configuration(format="text", config=PORT.format(port="ge-0/0/1", vlan="v5", vid=5))
    with pytest.raises(RPCError) as warned:
        nc.rpc("<commit-configuration/>")  # ncclient's default: raise on warnings too
    assert warned.value.severity == "warning"
    assert switch.port_vlans()["ge-0/0/1"] == 5  # committed all the same
    nc.raise_mode = RaiseMode.ERRORS
    nc.load_configuration(format="text", config=PORT.format(port="ge-0/0/2", vlan="v5", vid=5))
    reply = nc.rpc("<commit-configuration/>")
    assert reply.xpath("//commit-results/routing-engine/commit-success")
    assert [e.text for e in reply.xpath("//commit-results/rpc-error/error-severity")] == ["warning"]
    switch.faults.warn_on_commit()
    nc.load_configuration(format="text", config=PORT.format(port="ge-0/0/3", vlan="v5", vid=5))
    assert not nc.rpc("<commit-configuration/>").xpath("//rpc-error")


def test_delete_of_an_absent_statement_warns(switch: SimSwitch, connect) -> None:
    """A load that deletes what is not there warns "statement not found" (the reply
    PyEZ's tests carry: tests/data/junos/load-configuration-warnings.xml)."""
    real = etree.parse(str(DATA / "load-configuration-warnings.xml")).getroot()
    ns = {"nc": "urn:ietf:params:xml:ns:netconf:base:1.0"}
    expected = real.xpath("//nc:rpc-error/nc:error-message", namespaces=ns)[0].text.strip()
    nc = connect(switch)
    nc.raise_mode = RaiseMode.ERRORS
    reply = nc.load_configuration(
        format="text", config="interfaces { ge-0/0/1 { delete: native-vlan-id; } }"
    )
    assert [e.text for e in reply.xpath("//rpc-error/error-message")] == [f"\n{expected}\n"]
    assert reply.xpath("//load-configuration-results/ok")


# ---------------------------------------------------------------- shared candidate


def test_lock_is_refused_while_the_shared_candidate_is_modified(switch: SimSwitch, connect) -> None:
    """RFC 6241 §7.5 and Junos: no lock over someone's uncommitted changes."""
    operator, tool = connect(switch), connect(switch)
    operator.load_configuration(format="set", action="set", config="set vlans half-done vlan-id 7")
    with pytest.raises(RPCError) as refused:
        tool.rpc("<lock-configuration/>")
    assert refused.value.message.strip() == "configuration database modified"
    assert refused.value.tag == "lock-denied"
    operator.rpc("<discard-changes/>")
    tool.rpc("<lock-configuration/>")
    assert switch.lock_holder() == int(tool.session_id)


def test_unlock_discards_uncommitted_changes(switch: SimSwitch, connect) -> None:
    """`<lock-configuration>` reference: unlocking before a commit discards the changes."""
    nc = connect(switch)
    nc.rpc("<lock-configuration/>")
    nc.load_configuration(format="set", action="set", config="set vlans v9 vlan-id 9")
    nc.rpc("<unlock-configuration/>")
    assert "v9" not in switch.candidate_text()
    assert switch.candidate_text() == switch.committed_text()


def test_private_copy_commits_only_its_own_changes(switch: SimSwitch, connect) -> None:
    """Juniper: "Commit a Private Copy of the Configuration Using the Junos XML Protocol"."""
    tool, operator = connect(switch), connect(switch)
    operator.load_configuration(format="set", action="set", config="set vlans op vlan-id 7")
    with pytest.raises(RPCError, match="shared configuration database modified"):
        tool.rpc("<open-configuration><private/></open-configuration>")
    operator.rpc("<discard-changes/>")
    opened = tool.rpc("<open-configuration><private/></open-configuration>")
    assert not opened.xpath("//rpc-error")  # Junos 18.2R1 and later: no warning
    tool.load_configuration(format="text", config=PORT.format(port="ge-0/0/4", vlan="v4", vid=4))
    assert "v4" in _text(tool) and "v4" not in _text(operator)  # private until committed
    operator.load_configuration(format="set", action="set", config="set vlans op vlan-id 7")
    with pytest.raises(RPCError, match=r"^\s*configuration database modified"):
        tool.rpc("<commit-configuration/>")
    operator.rpc("<discard-changes/>")
    operator.rpc("<lock-configuration/>")
    with pytest.raises(RPCError, match="configuration database locked by"):
        tool.rpc("<commit-configuration/>")
    operator.rpc("<unlock-configuration/>")
    with pytest.raises(RPCError, match="commit confirmed is not supported in private mode"):
        tool.rpc("<commit-configuration><confirmed/></commit-configuration>")
    reply = tool.rpc("<commit-configuration/>")
    assert reply.xpath("//commit-results/load-success")
    assert reply.xpath("//commit-results/routing-engine/commit-success")
    assert switch.port_vlans()["ge-0/0/4"] == 4 and "op" not in switch.committed_text()
    empty = tool.rpc("<commit-configuration/>")  # nothing changed since
    assert not empty.xpath("//commit-success") and empty.xpath("//commit-results")
    tool.load_configuration(format="set", action="set", config="set vlans dropped vlan-id 8")
    tool.rpc("<close-configuration/>")
    assert "dropped" not in _text(tool)
    with pytest.raises(RPCError, match="not open"):
        tool.rpc("<close-configuration/>")


def test_pending_confirmed_commit_is_rolled_back_when_its_session_ends(
    switch: SimSwitch, connect
) -> None:
    """RFC 6241 §8.4 (confirmed-commit:1.0, which Junos advertises): the session that
    made a confirmed commit ends → the previous configuration is restored at once."""
    nc = connect(switch)
    nc.load_configuration(format="text", config=PORT.format(port="ge-0/0/6", vlan="v6", vid=6))
    nc.rpc(
        "<commit-configuration><confirmed/><confirm-timeout>60</confirm-timeout>"
        "</commit-configuration>"
    )
    assert switch.port_vlans()["ge-0/0/6"] == 6 and switch.confirm_pending()
    nc.close_session()
    assert _wait(lambda: switch.port_vlans()["ge-0/0/6"] == 1, 5)  # long before 60 "minutes"
    assert not switch.confirm_pending()


# ---------------------------------------------------------------- interfaces


def test_absent_interfaces_commit_and_interface_information_tells(
    switch: SimSwitch, connect
) -> None:
    """Junos commits configuration for interfaces it does not have; which exist is an
    operational question. Reply shape: tests/data/junos/get-interface-information-terse.xml."""
    nc = connect(switch)
    for port in ("xe-0/0/1", "ge-0/0/99", "ge-1/0/3"):
        nc.load_configuration(format="text", config=PORT.format(port=port, vlan="v5", vid=5))
    nc.rpc("<commit-configuration/>")
    assert "ge-0/0/99" in switch.committed_text()
    terse = nc.rpc("<get-interface-information><terse/></get-interface-information>")
    real = etree.parse(str(DATA / "get-interface-information-terse.xml")).getroot()
    real_shape = [etree.QName(e).localname for e in real[0][0]][:3]
    ours = terse.xpath("//physical-interface")
    assert [etree.QName(e).localname for e in ours[0]][:3] == real_shape
    names = [n.text.strip() for n in terse.xpath("//physical-interface/name")]
    assert names[:8] == [f"ge-0/0/{i}" for i in range(8)]
    assert not {"xe-0/0/1", "ge-0/0/99", "ge-1/0/3"} & set(names)
    one = nc.rpc(
        "<get-interface-information><terse/><interface-name>ge-0/0/3</interface-name>"
        "</get-interface-information>"
    )
    assert [n.text for n in one.xpath("//physical-interface/name")] == ["\nge-0/0/3\n"]
    assert one.xpath("//logical-interface/name")[0].text.strip() == "ge-0/0/3.0"
    with pytest.raises(RPCError, match="device ge-0/0/99 not found"):
        nc.rpc(
            "<get-interface-information><interface-name>ge-0/0/99</interface-name>"
            "</get-interface-information>"
        )


# ---------------------------------------------------------------- reading what is configured


def test_inactive_trunk_and_native_vlan_are_read_as_junos_shows_them(
    switch: SimSwitch, connect
) -> None:
    nc = connect(switch)
    nc.load_configuration(format="text", config=PORT.format(port="ge-0/0/2", vlan="v10", vid=10))
    nc.load_configuration(
        action="set",
        config="deactivate interfaces ge-0/0/2 unit 0 family ethernet-switching vlan\n"
        "set vlans v5 vlan-id 5\n"
        "set interfaces ge-0/0/3 native-vlan-id 5\n"
        "set interfaces ge-0/0/3 unit 0 family ethernet-switching interface-mode trunk\n"
        "set interfaces ge-0/0/3 unit 0 family ethernet-switching vlan members v10",
    )
    nc.rpc("<commit-configuration/>")
    vlans = switch.port_vlans()
    assert vlans["ge-0/0/2"] == 1  # its vlan stanza is inactive: back in default
    assert vlans["ge-0/0/3"] == 5  # untagged frames of a trunk land in its native VLAN
    xml = nc.get_configuration(format="xml")
    assert xml.xpath("//interface[name='ge-0/0/2']//vlan/@inactive") == ["inactive"]
    assert "inactive: vlan {" in _text(nc)
    shown = nc.rpc('<get-configuration format="set"/>').xpath("//configuration-set")[0].text
    assert "deactivate interfaces ge-0/0/2 unit 0 family ethernet-switching vlan\n" in shown
    nc.load_configuration(
        format="text",
        action="replace",
        config="interfaces { replace: ge-0/0/3 { unit 0 { family ethernet-switching {"
        " interface-mode access; vlan { members v10; } } } } }",
    )
    nc.rpc("<commit-configuration/>")
    assert switch.port_vlans()["ge-0/0/3"] == 10
    assert "native-vlan-id" not in switch.committed_text()  # replace: removed the leftover


def test_groups_and_interface_ranges_apply_and_show_with_inherit(
    switch: SimSwitch, connect
) -> None:
    nc = connect(switch)
    nc.load_configuration(
        format="text",
        config="""
        groups { access-v20 { interfaces { "<ge-0/0/[5-6]>" { unit 0 { family ethernet-switching {
            vlan { members v20; } } } } } } }
        apply-groups access-v20;
        interfaces { interface-range uplinks { member-range ge-0/0/1 to ge-0/0/2;
            unit 0 { family ethernet-switching { vlan { members v30; } } } } }
        vlans { v20 { vlan-id 20; } v30 { vlan-id 30; } }
        """,
    )
    nc.rpc("<commit-configuration/>")
    vlans = switch.port_vlans()
    assert [vlans[f"ge-0/0/{i}"] for i in range(8)] == [1, 30, 30, 1, 1, 20, 20, 1]
    flt = etree.fromstring(
        "<configuration><interfaces><interface><name>ge-0/0/5</name></interface>"
        "</interfaces></configuration>"
    )
    plain = nc.get_configuration(format="xml", filter=flt)
    assert not plain.xpath("//interface[name='ge-0/0/5']//members")
    inherited = nc.rpc(
        '<get-configuration database="committed" inherit="inherit"><configuration><interfaces>'
        "<interface><name>ge-0/0/5</name></interface></interfaces></configuration>"
        "</get-configuration>"
    )
    assert [m.text for m in inherited.xpath("//interface[name='ge-0/0/5']//members")] == ["v20"]
    assert not inherited.xpath("//@*[local-name()='group']")  # origins only when asked
    marked = nc.rpc(
        '<get-configuration database="committed" inherit="inherit" groups="groups"'
        ' interface-ranges="interface-ranges"/>'
    )
    members = marked.xpath("//interface[name='ge-0/0/5']//members")[0]
    assert members.xpath("@*[local-name()='group']") == ["access-v20"]
    members = marked.xpath("//interface[name='ge-0/0/1']//members")[0]
    assert members.xpath("@*[local-name()='interface-range']") == ["uplinks"]


# ---------------------------------------------------------------- set format


def test_set_lines_touch_only_what_they_name(switch: SimSwitch, connect) -> None:
    nc = connect(switch)
    nc.load_configuration(
        action="set",
        config="set vlans a vlan-id 11\nset vlans b vlan-id 12\nset vlans c\n"
        "set interfaces ge-0/0/1 description one\nset interfaces ge-0/0/2 description two",
    )
    nc.load_configuration(action="set", config="delete vlans a\ndelete interfaces ge-0/0/1")
    text = _text(nc)
    assert "a {" not in text and "b {" in text and "    c;" in text
    assert "ge-0/0/1 {" not in text and "ge-0/0/2 {" in text and "default {" in text


# ---------------------------------------------------------------- factory default


def test_factory_ports_name_no_vlan_and_are_in_vlan_1(switch: SimSwitch, connect) -> None:
    """Juniper's EX4300 default configuration: `family ethernet-switching` and no members."""
    assert set(switch.port_vlans().values()) == {1}
    nc = connect(switch)
    port = nc.get_configuration(format="xml").xpath("//interface[name='ge-0/0/0']")[0]
    assert port.xpath("unit/family/ethernet-switching") and not port.xpath(".//members")
    nc.load_configuration(
        action="set",
        config="set vlans v7 vlan-id 7\n"
        "set interfaces ge-0/0/0 unit 0 family ethernet-switching vlan members v7",
    )
    nc.rpc("<commit-configuration/>")  # merging onto a factory port needs no replace
    assert switch.port_vlans()["ge-0/0/0"] == 7


def test_virtual_chassis_members_have_their_own_fpc_ports(connect) -> None:
    with SimSwitch.running(ports=2, members=2) as sw:
        assert list(sw.port_vlans()) == ["ge-0/0/0", "ge-0/0/1", "ge-1/0/0", "ge-1/0/1"]
        nc = connect(sw)
        terse = nc.rpc("<get-interface-information><terse/></get-interface-information>")
        names = {n.text.strip() for n in terse.xpath("//physical-interface/name")}
        assert {"ge-1/0/1", "ge-0/0/1"} <= names and "ge-2/0/0" not in names
        nc.close_session()
