"""ncclient (Junos device handler) against the simulator, in both framings."""

from __future__ import annotations

import pytest
from lxml import etree
from ncclient.operations import RPCError
from ncclient.transport.session import NetconfBase

from metalnet.sim.switch import SimSwitch

PORT_TEXT = """
interfaces {
    ge-0/0/3 {
        unit 0 {
            family ethernet-switching {
                interface-mode access;
                replace: vlan { members v100; }
            }
        }
    }
}
vlans { v100 { vlan-id 100; } }
"""


@pytest.mark.parametrize("netconf_11", [True, False], ids=["base1.1", "base1.0"])
def test_lock_load_commit_read_in_both_framings(netconf_11: bool, connect) -> None:
    with SimSwitch.running(ports=8, netconf_11=netconf_11) as sw:
        nc = connect(sw)
        assert nc._session._base == (NetconfBase.BASE_11 if netconf_11 else NetconfBase.BASE_10)
        nc.rpc("<lock-configuration/>")
        nc.load_configuration(format="text", action="replace", config=PORT_TEXT)
        assert sw.port_vlans()["ge-0/0/3"] == 1  # loaded, not committed
        nc.commit()
        nc.rpc("<unlock-configuration/>")
        assert sw.port_vlans()["ge-0/0/3"] == 100
        flt = etree.fromstring(
            "<configuration><interfaces><interface><name>ge-0/0/3</name>"
            "</interface></interfaces></configuration>"
        )
        reply = nc.get_configuration(format="xml", filter=flt)
        assert [n.text for n in reply.xpath("//interface/name")] == ["ge-0/0/3"]
        assert (
            reply.xpath("//interface/unit/family/ethernet-switching/vlan/members")[0].text == "v100"
        )


def test_standard_operations(switch: SimSwitch, connect) -> None:
    nc = connect(switch)
    nc.lock(target="candidate")
    config = """<config><configuration><vlans><vlan><name>v7</name><vlan-id>7</vlan-id></vlan>
      </vlans><interfaces><interface><name>ge-0/0/7</name><unit><name>0</name><family>
      <ethernet-switching><vlan operation="replace"><members>v7</members></vlan>
      </ethernet-switching></family></unit></interface></interfaces></configuration></config>"""
    nc.edit_config(target="candidate", config=config)
    nc.validate(source="candidate")
    running = nc.get_config(source="running").xpath("//vlans/vlan/name")
    candidate = nc.get_config(source="candidate").xpath("//vlans/vlan/name")
    assert [v.text for v in running] == ["default"]
    assert [v.text for v in candidate] == ["default", "v7"]
    nc.discard_changes()
    assert [v.text for v in nc.get_config(source="candidate").xpath("//vlans/vlan/name")] == [
        "default"
    ]
    nc.edit_config(target="candidate", config=config)
    nc.dispatch(etree.fromstring("<commit/>"))
    nc.unlock(target="candidate")
    assert switch.port_vlans()["ge-0/0/7"] == 7


@pytest.mark.parametrize(
    ("fmt", "action", "payload"),
    [
        ("text", "merge", "vlans { v5 { vlan-id 5; } }"),
        (
            "xml",
            "merge",
            "<configuration><vlans><vlan><name>v5</name><vlan-id>5</vlan-id></vlan></vlans></configuration>",
        ),
        ("text", "set", "set vlans v5 vlan-id 5"),
    ],
)
def test_load_formats_merge_into_candidate(
    switch: SimSwitch, connect, fmt, action, payload
) -> None:
    nc = connect(switch)
    config = etree.fromstring(payload)[0] if fmt == "xml" else payload
    if fmt == "xml":
        nc.load_configuration(format="xml", action=action, config=config)
    else:
        nc.load_configuration(format=fmt, action=action, config=config)
    reply = nc.get_configuration(format="text")
    assert "v5 {\n        vlan-id 5;" in reply.xpath("//configuration-text")[0].text
    assert "default {" in reply.xpath("//configuration-text")[0].text  # merged, not replaced


def test_override_replaces_whole_candidate(switch: SimSwitch, connect) -> None:
    nc = connect(switch)
    nc.load_configuration(format="text", action="override", config="system { host-name x; }")
    text = nc.get_configuration(format="text").xpath("//configuration-text")[0].text
    assert "interfaces" not in text and "host-name x;" in text
    nc.rpc("<discard-changes/>")


def test_set_format_reply_and_committed_database(switch: SimSwitch, connect) -> None:
    nc = connect(switch)
    nc.load_configuration(action="set", config="set vlans v9 vlan-id 9")
    committed = nc.rpc('<get-configuration database="committed" format="set"/>')
    candidate = nc.rpc('<get-configuration format="set"/>')
    assert "set vlans v9 vlan-id 9" not in committed.xpath("//configuration-set")[0].text
    assert "set vlans v9 vlan-id 9" in candidate.xpath("//configuration-set")[0].text


def test_errors_are_junos_rpc_errors(switch: SimSwitch, connect) -> None:
    nc = connect(switch)
    with pytest.raises(RPCError) as unknown:
        nc.rpc("<get-frobnicator-information/>")
    assert unknown.value.message == "\nsyntax error\n"  # framed by newlines, as Junos sends it
    assert unknown.value.tag == "operation-failed"
    with pytest.raises(RPCError, match="syntax error"):
        nc.load_configuration(format="text", config="vlans { v1 { vlan-id 1 }")
    with pytest.raises(RPCError) as locked:
        nc.rpc("<unlock-configuration/>")
    assert locked.value.severity == "error"


def test_software_information_and_show_version(switch: SimSwitch, connect) -> None:
    nc = connect(switch)
    info = nc.rpc("<get-software-information/>")
    assert info.xpath("//product-model")[0].text == "ex4300-48t"
    assert info.xpath("//host-name")[0].text == "sw1"
    shown = nc.command("show version")
    assert shown.xpath("//junos-version")[0].text == info.xpath("//junos-version")[0].text
