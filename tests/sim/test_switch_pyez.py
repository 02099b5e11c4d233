"""Juniper's PyEZ (junos-eznc) against the simulator, unmodified."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from jnpr.junos import Device
from jnpr.junos.exception import CommitError, ConfigLoadError, LockError
from jnpr.junos.utils.config import Config

from metalnet.sim.switch import SimSwitch


@pytest.fixture
def device(request: pytest.FixtureRequest) -> Iterator[tuple[SimSwitch, Device]]:
    """A PyEZ session to a fresh switch; indirect param False forces base:1.0 framing."""
    netconf_11 = getattr(request, "param", True)
    with SimSwitch.running(ports=8, netconf_11=netconf_11, confirm_unit_seconds=0.5) as sw:
        dev = Device(host=sw.host, port=sw.port, user="admin", passwd="admin", gather_facts=False)
        dev.open()
        yield sw, dev
        if dev.connected:
            dev.close()


@pytest.mark.parametrize("device", [True, False], ids=["base1.1", "base1.0"], indirect=True)
def test_load_text_set_xml_and_commit(device) -> None:
    sw, dev = device
    cu = Config(dev)
    cu.lock()
    cu.load("vlans { v10 { vlan-id 10; } v20 { vlan-id 20; } }", format="text")
    cu.load(
        "set interfaces ge-0/0/1 unit 0 family ethernet-switching vlan members v10", format="set"
    )
    xml = (
        "<configuration><interfaces><interface><name>ge-0/0/2</name><unit><name>0</name>"
        '<family><ethernet-switching><vlan replace="replace"><members>v20</members></vlan>'
        "</ethernet-switching></family></unit></interface></interfaces></configuration>"
    )
    cu.load(xml, format="xml")
    assert cu.commit_check() is True  # a factory port names no VLAN: merging one is enough
    cu.load(
        "set interfaces ge-0/0/1 unit 0 family ethernet-switching vlan members v20", format="set"
    )
    with pytest.raises(CommitError, match="more than one vlan"):
        cu.commit_check()  # members is a list: the merge added v20 next to v10
    cu.load(
        "interfaces { ge-0/0/1 { unit 0 { family ethernet-switching {"
        " replace: vlan { members v10; } } } } }",
        format="text",
    )
    assert cu.commit(comment="move two ports") is True
    cu.unlock()
    assert sw.port_vlans()["ge-0/0/1"] == 10
    assert sw.port_vlans()["ge-0/0/2"] == 20


def test_commit_confirm_rolls_back_unless_confirmed(device) -> None:
    sw, dev = device
    cu = Config(dev)
    cu.load("set interfaces ge-0/0/4 disable", format="set")
    assert cu.commit(confirm=1) is True
    assert sw.port_vlans()["ge-0/0/4"] is None and sw.confirm_pending()
    deadline = time.monotonic() + 5
    while sw.port_vlans()["ge-0/0/4"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sw.port_vlans()["ge-0/0/4"] == 1  # rolled back by itself
    cu.load("set interfaces ge-0/0/5 disable", format="set")
    cu.commit(confirm=1)
    cu.commit()  # confirms
    time.sleep(0.8)
    assert sw.port_vlans()["ge-0/0/5"] is None and not sw.confirm_pending()


def test_lock_contention_and_rpc_get_configuration(device) -> None:
    sw, dev = device
    other = Device(host=sw.host, port=sw.port, user="admin", passwd="admin", gather_facts=False)
    other.open()
    try:
        Config(other).lock()
        with pytest.raises(LockError) as denied:
            Config(dev).lock()
        assert "configuration database locked" in denied.value.message
        with pytest.raises(ConfigLoadError, match="configuration database locked"):
            Config(dev).load("set vlans v3 vlan-id 3", format="set")
    finally:
        other.close()
    Config(dev).lock()  # the closed session released its lock
    config = dev.rpc.get_configuration()
    assert config.tag == "configuration"
    assert config.findtext("system/host-name") == "sw1"


def test_facts_with_gather_facts(device) -> None:
    sw, _ = device
    with Device(host=sw.host, port=sw.port, user="admin", passwd="admin") as dev:
        assert dev.facts["hostname"] == "sw1"
        assert dev.facts["version"] == "21.4R3-S5.4"


def test_diff_and_rollback(device) -> None:
    sw, dev = device
    cu = Config(dev)
    assert cu.diff() is None
    cu.load("set vlans v8 vlan-id 8", format="set")
    assert "+        vlan-id 8;" in cu.diff()
    cu.commit()
    cu.rollback(1)
    assert "-        vlan-id 8;" in cu.diff()
    cu.commit()
    assert "v8" not in sw.committed_text()


@pytest.mark.parametrize("fmt", ["text", "set"])
def test_operator_merges_a_vlan_onto_a_factory_port(device, fmt: str) -> None:
    """What operators do every day: merge, check, look at the diff, commit with a comment."""
    sw, dev = device
    cu = Config(dev)
    change = {
        "text": "vlans { v30 { vlan-id 30; } } interfaces { ge-0/0/3 { unit 0 {"
        " family ethernet-switching { vlan { members v30; } } } } }",
        "set": "set vlans v30 vlan-id 30\n"
        "set interfaces ge-0/0/3 unit 0 family ethernet-switching vlan members v30",
    }[fmt]
    cu.lock()
    cu.load(change, format=fmt)
    diff = cu.diff()
    assert "+                    members v30;" in diff and "+        vlan-id 30;" in diff
    assert cu.commit_check() is True
    assert cu.commit(comment="ge-0/0/3 to v30") is True
    cu.unlock()
    assert sw.port_vlans()["ge-0/0/3"] == 30
    cu.rollback(1)
    assert "-                    members v30;" in cu.diff()
    cu.commit(comment="undo")
    assert sw.port_vlans()["ge-0/0/3"] == 1


def test_commit_warning_is_ignored_only_when_asked(device) -> None:
    sw, dev = device
    sw.faults.warn_on_commit("mgd: licence for feature l2-learning is missing")
    cu = Config(dev)
    cu.load("set vlans v40 vlan-id 40", format="set")
    with pytest.raises(CommitError, match="licence"):
        cu.commit()  # PyEZ raises on a warning by default …
    assert "v40" in sw.committed_text()  # … though the switch committed
    cu.load("set vlans v41 vlan-id 41", format="set")
    assert cu.commit(ignore_warning=True) is True


@pytest.mark.parametrize("dialect", ["els", "legacy"])
def test_private_mode_on_both_dialects(dialect: str) -> None:
    """PyEZ's Config(mode="private") tolerates the open warning older releases send."""
    with SimSwitch.running(ports=4, dialect=dialect) as sw:
        with Device(host=sw.host, port=sw.port, user="admin", passwd="admin") as dev:
            assert dev.facts["model"] == ("EX4300-48T" if dialect == "els" else "EX4200-48T")
            with Config(dev, mode="private") as cu:
                cu.load("set vlans v50 vlan-id 50", format="set")
                assert cu.commit() is True
        assert "v50" in sw.committed_text()
