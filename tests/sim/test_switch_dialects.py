"""ELS and the older Layer 2 software: each switch speaks its own dialect only.

Juniper's "Getting Started with Enhanced Layer 2 Software": `interface-mode` (ELS)
replaced `port-mode`; a trunk's native VLAN moved from `family ethernet-switching`
to the physical interface. The other dialect's statements are syntax errors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ncclient.operations import RPCError

from metalnet.sim.switch import SimSwitch

DATA = Path(__file__).parent.parent / "data" / "junos"

ELS_ACCESS = (
    "interfaces { ge-0/0/1 { unit 0 { family ethernet-switching {"
    " interface-mode access; vlan { members v10; } } } } } vlans { v10 { vlan-id 10; } }"
)
LEGACY_ACCESS = ELS_ACCESS.replace("interface-mode", "port-mode")
LEGACY_TRUNK = (
    "interfaces { ge-0/0/2 { unit 0 { family ethernet-switching { port-mode trunk;"
    " native-vlan-id v10; vlan { members v10; } } } } }"
)
ELS_TRUNK = (
    "interfaces { ge-0/0/2 { native-vlan-id 10; unit 0 { family ethernet-switching {"
    " interface-mode trunk; vlan { members v10; } } } } }"
)


@pytest.mark.parametrize(
    ("dialect", "model", "own", "trunk", "foreign"),
    [
        ("els", "ex4300-48t", ELS_ACCESS, ELS_TRUNK, LEGACY_ACCESS),
        ("legacy", "ex4200-48t", LEGACY_ACCESS, LEGACY_TRUNK, ELS_ACCESS),
    ],
)
def test_each_dialect_accepts_its_own_statements_only(
    connect, dialect: str, model: str, own: str, trunk: str, foreign: str
) -> None:
    with SimSwitch.running(ports=4, dialect=dialect) as sw:
        nc = connect(sw)
        assert nc.rpc("<get-software-information/>").xpath("//product-model")[0].text == model
        with pytest.raises(RPCError) as refused:
            nc.load_configuration(format="text", config=foreign)
        assert refused.value.message.strip() == "syntax error"
        assert refused.value.info and ("port-mode" in refused.value.info) == (dialect == "els")
        nc.load_configuration(format="text", config=own)
        nc.load_configuration(format="text", config=trunk)
        nc.rpc("<commit-configuration/>")
        assert sw.port_vlans() == {"ge-0/0/0": 1, "ge-0/0/1": 10, "ge-0/0/2": 10, "ge-0/0/3": 1}
        nc.close_session()


def test_legacy_factory_ports_are_in_the_builtin_default_vlan(connect) -> None:
    with SimSwitch.running(ports=2, dialect="legacy") as sw:
        assert "vlans" not in sw.committed_text()  # `default` is built in, not configured
        assert sw.port_vlans() == {"ge-0/0/0": 1, "ge-0/0/1": 1}
        sw.set_port_vlan_out_of_band("ge-0/0/1", 30)
        assert "port-mode access;" in sw.committed_text()
        assert sw.port_vlans()["ge-0/0/1"] == 30


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown dialect 'nxos'"):
        SimSwitch(dialect="nxos")


def test_a_real_els_interfaces_stanza_loads_on_els_only(connect) -> None:
    """tests/data/junos/ansible-l2-interfaces-els.conf: access, trunk with native VLAN."""
    stanza = (DATA / "ansible-l2-interfaces-els.conf").read_text()
    config = (
        f"interfaces {{ {stanza} }} vlans {{ "
        + "".join(f"vlan{n} {{ vlan-id {n}; }} " for n in (100, 200, 300, 400))
        + "}"
    )
    with SimSwitch.running(ports=4) as els, SimSwitch.running(ports=4, dialect="legacy") as old:
        nc = connect(els)
        nc.load_configuration(format="text", action="replace", config=config)
        nc.rpc("<commit-configuration/>")
        assert els.port_vlans() == {"ge-0/0/0": 1, "ge-0/0/1": 100, "ge-0/0/2": 400, "ge-0/0/3": 1}
        with pytest.raises(RPCError, match="syntax error"):
            connect(old).load_configuration(format="text", config=config)
