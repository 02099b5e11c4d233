"""Reply parsing on real Junos replies and configurations (tests/data/junos, sources named
in each file), not only on the simulator's own output."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from metalnet.sim.switch import text
from metalnet.switches.base import PortState
from metalnet.switches.drift import in_sync
from metalnet.switches.junos import parse
from metalnet.switches.junos.config import Dialect
from metalnet.switches.junos.driver import JunosDriver
from metalnet.switches.netconf import warnings_of

CORPUS = Path(__file__).parent.parent / "data" / "junos"


def reply(name: str) -> etree._Element:
    return etree.parse(CORPUS / name).getroot()


def test_every_corpus_file_names_its_source() -> None:
    files = sorted(CORPUS.glob("*.xml"))
    assert len(files) >= 10
    for path in files:
        first = path.read_text().splitlines()[0]
        assert first.startswith("<!-- ") and ("github.com" in first or "Juniper" in first), path


@pytest.mark.parametrize(
    ("name", "model", "version", "host", "dialect"),
    [
        ("software-ex2200-11.4.xml", "ex2200-c-12t-2g", "11.4R1.6", "sw1", Dialect.LEGACY),
        ("software-ex4200-vc.xml", "ex4200-48t", "12.3R12.4", "rack9-tor", Dialect.LEGACY),
        ("software-ex4300-els.xml", "ex4300-48t", "21.4R3-S5.4", "leaf-12", Dialect.ELS),
    ],
)
def test_software_information(
    name: str, model: str, version: str, host: str, dialect: Dialect
) -> None:
    info = parse.software(reply(name))
    assert info is not None
    assert (info.model, info.version, info.hostname) == (model, version, host)
    assert info.dialect is dialect


def test_physical_interfaces_from_a_terse_listing() -> None:
    assert parse.physical_interfaces(reply("interfaces-terse.xml")) == {
        "ge-0/0/0",
        "ge-0/0/1",
        "xe-0/2/0",
        "me0",
    }


def test_physical_interfaces_from_a_captured_reply() -> None:
    found = parse.physical_interfaces(reply("get-interface-information-terse.xml"))
    assert found and all("\n" not in name and name == name.strip() for name in found)
    assert any(name.startswith(("ge-", "xe-", "et-")) for name in found)


def test_captured_load_warnings_are_read() -> None:
    assert warnings_of(reply("load-configuration-warnings.xml"))


def test_commit_with_a_warning_succeeded_and_the_warning_is_read() -> None:
    root = reply("commit-warning.xml")
    assert parse.commit_succeeded(root)
    assert warnings_of(root) == ["requires 'bgp' license"]
    load = reply("load-warning.xml")
    assert warnings_of(load) == ["statement not found: system"]


def test_empty_commit_results_are_not_success() -> None:
    assert not parse.commit_succeeded(reply("commit-private-empty.xml"))


def els_states() -> dict[str, PortState]:
    return parse.port_states(parse.configuration(reply("config-els.xml")), None)


def test_els_access_port() -> None:
    state = els_states()["ge-0/0/0"]
    assert (state.vlan, state.vlans, state.mode, state.native_vlan) == (100, (100,), "access", None)
    assert in_sync(100, state)


def test_els_trunk_with_native_vlan_is_drift() -> None:
    state = els_states()["ge-0/0/1"]
    assert state.mode == "trunk" and state.vlans == (100, 200) and state.native_vlan == 5
    assert not in_sync(100, state)


def test_factory_port_without_members_is_in_vlan_1() -> None:
    state = els_states()["ge-0/0/2"]
    assert state.vlans == (1,) and state.vlan == 1


def test_deactivated_vlan_statement_does_not_count() -> None:
    """`vlan { members vlan300; }` deactivated: the port is in the default VLAN."""
    state = els_states()["ge-0/0/3"]
    assert state.vlans == (1,) and not in_sync(300, state)


def test_deactivated_interface_reads_as_not_configured() -> None:
    states = els_states()
    assert "ge-0/0/4" not in states
    wanted = parse.port_states(parse.configuration(reply("config-els.xml")), ["ge-0/0/4"])
    assert wanted["ge-0/0/4"] == PortState("ge-0/0/4", None)
    assert not in_sync(100, wanted["ge-0/0/4"])


def test_numeric_member_and_disabled_port() -> None:
    states = els_states()
    assert states["ge-0/0/5"].vlans == (200,)
    assert states["ge-0/0/6"].enabled is False and not in_sync(100, states["ge-0/0/6"])
    assert "me0" not in states


def test_vlan_names_skip_inactive_but_taken_names_include_them() -> None:
    config = parse.configuration(reply("config-els.xml"))
    assert parse.vlan_names(config) == {1: "default", 100: "vlan100", 200: "vlan200", 70: "vlan7"}
    assert parse.vlan_name_taken(config, "vlan300") == 300
    assert parse.vlan_name_taken(config, "vlan7") == 70
    assert parse.vlan_name_taken(config, "vlan8") is None


def test_new_vlan_never_renumbers_an_existing_name() -> None:
    """VLAN 7 must not be defined as `vlan7`: that name is VLAN 70's on this switch."""
    config = parse.configuration(reply("config-els.xml"))
    names = parse.vlan_names(config)
    [definition] = JunosDriver._definitions({7}, config, names)
    assert definition.vlan_id == 7 and definition.name == "vlan7-2"
    assert names[7] == "vlan7-2"


def test_legacy_dialect_ports() -> None:
    config = parse.configuration(reply("config-legacy.xml"))
    states = parse.port_states(config, None)
    assert states["ge-0/0/0"].vlans == (10,) and in_sync(10, states["ge-0/0/0"])
    trunk = states["ge-0/0/1"]
    assert trunk.mode == "trunk" and trunk.native_vlan == 5 and not in_sync(10, trunk)
    assert states["ge-0/0/2"].vlans == (1,)
    assert states["ge-0/0/3"].vlans == (20,)  # member through `vlans eng interface ge-0/0/3.0`
    assert states["ge-0/0/4"].native_vlan == 10  # without ELS a native VLAN may be a name


def test_a_real_els_interfaces_stanza() -> None:
    """The Ansible Junos collection's fixture, read through the Junos text parser."""
    stanza = (CORPUS / "ansible-l2-interfaces-els.conf").read_text()
    vlans = "vlans { vlan100 { vlan-id 100; } vlan200 { vlan-id 200; } vlan300 { vlan-id 300; } }"
    config = text.parse_text(f"interfaces {{\n{stanza}}}\n{vlans}\n")
    states = parse.port_states(config, None)
    assert set(states) == {"ge-0/0/0", "ge-0/0/1", "ge-0/0/2"}  # fxp0 is no switch port
    assert states["ge-0/0/0"] == PortState("ge-0/0/0", None)  # no switching family
    assert in_sync(100, states["ge-0/0/1"])
    trunk = states["ge-0/0/2"]
    assert (trunk.mode, trunk.vlans, trunk.native_vlan) == ("trunk", (200, 300), 400)


def test_inherited_statements_name_their_source() -> None:
    config = parse.configuration(reply("config-inherited.xml"))
    ports = ["ge-0/0/7", "ge-0/0/8", "ge-0/0/9"]
    assert parse.governed_ports(config, ports) == {
        "ge-0/0/7": "interface-range servers",
        "ge-0/0/8": "group access-ports",
    }
    states = parse.port_states(config, ports)
    assert states["ge-0/0/7"].vlans == (100,) and states["ge-0/0/8"].vlans == (200,)


def test_ranges_and_groups_in_raw_configuration() -> None:
    config = parse.configuration(reply("config-ranges-raw.xml"))
    ports = ["ge-0/0/7", "ge-0/0/8", "ge-0/0/9", "ge-0/0/21", "ge-0/0/24", "ge-0/1/21"]
    assert parse.governed_ports(config, ports) == {
        "ge-0/0/7": "interface-range servers",
        "ge-0/0/8": "group access-ports",
        "ge-0/0/21": "interface-range servers",
    }


def test_jcmd_inactive_markers() -> None:
    config = parse.configuration(reply("config-jcmd.xml"))
    states = parse.port_states(config, ["ge-0/0/10", "ge-0/0/11"])
    assert states["ge-0/0/10"].vlans == (200,)
    assert states["ge-0/0/11"] == PortState("ge-0/0/11", None)
