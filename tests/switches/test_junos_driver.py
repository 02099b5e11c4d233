"""The Junos driver against the simulator over real SSH."""

from __future__ import annotations

import threading
import time

import pytest
from ncclient import manager

from metalnet.sim.switch import SimSwitch
from metalnet.switches.base import (
    CommitRefused,
    PortChange,
    SwitchAuthError,
    SwitchError,
    SwitchLocked,
    SwitchTarget,
    SwitchUnreachable,
)
from metalnet.switches.junos import JunosDriver


def _holder(sim: SimSwitch):
    """Another NETCONF client, e.g. an operator's session holding the lock."""
    return manager.connect(
        host=sim.host,
        port=sim.port,
        username="admin",
        password="admin",
        device_params={"name": "junos"},
        hostkey_verify=False,
        look_for_keys=False,
        allow_agent=False,
    )


def test_apply_batch_then_read_back(sim: SimSwitch) -> None:
    with JunosDriver(sim.target()) as driver:
        result = driver.apply(
            [PortChange("ge-0/0/1", 100), PortChange("ge-0/0/2", 200), PortChange("ge-0/0/3", 1)]
        )
        assert result.switch == "sw1" and len(result.changes) == 3 and result.seconds > 0
        assert sim.commit_count() == 2  # commit confirmed + confirming commit: one batch
        ports = driver.read_ports(["ge-0/0/1", "ge-0/0/2", "ge-0/0/3", "ge-0/0/4"])
    assert {p: s.vlan for p, s in ports.items()} == {
        "ge-0/0/1": 100,
        "ge-0/0/2": 200,
        "ge-0/0/3": 1,
        "ge-0/0/4": 1,
    }
    assert sim.port_vlans()["ge-0/0/2"] == 200
    assert not sim.confirm_pending()
    committed = sim.committed_text()
    assert "vlan100 {" in committed and "vlan1 {" not in committed  # vlan 1 is `default`


def test_vlan_is_replaced_not_added(sim: SimSwitch) -> None:
    with JunosDriver(sim.target()) as driver:
        driver.apply([PortChange("ge-0/0/5", 100)])
        driver.apply([PortChange("ge-0/0/5", 200)])
        state = driver.read_ports(["ge-0/0/5"])["ge-0/0/5"]
    assert state.vlans == (200,) and state.vlan == 200 and state.enabled


def test_read_ports_reports_drift_and_disabled_ports(sim: SimSwitch) -> None:
    sim.set_port_vlan_out_of_band("ge-0/0/6", 300)
    with JunosDriver(sim.target()) as driver:
        driver.apply([PortChange("ge-0/0/7", 1)])
        holder = _holder(sim)
        holder.load_configuration(format="text", config="interfaces { ge-0/0/7 { disable; } }")
        holder.commit()
        holder.close_session()
        ports = driver.read_ports()
    assert len(ports) == 8
    assert ports["ge-0/0/6"].vlan == 300
    assert ports["ge-0/0/7"].enabled is False


BAD_INTERFACES = [
    "ge-0/0/1; delete interfaces",
    "ge-0/0/1 }",
    "ge-0/0/1{",
    'ge-0/0/1"',
    "ge-0/0/1\n",
    "ge-0/0/1 unit 0",
    "",
    "xe-0/0/1/2",
]


@pytest.mark.parametrize("interface", BAD_INTERFACES)
def test_bad_interface_refused_before_connecting(nowhere: SwitchTarget, interface: str) -> None:
    driver = JunosDriver(nowhere)
    with pytest.raises(ValueError, match="not a Junos port name"):
        driver.apply([PortChange("ge-0/0/2", 10), PortChange(interface, 10)])
    with pytest.raises(ValueError, match="not a Junos port name"):
        driver.read_ports([interface])


@pytest.mark.parametrize("vlan", [0, 4095, 5000, -3, True])
def test_bad_vlan_refused_before_connecting(nowhere: SwitchTarget, vlan: object) -> None:
    with pytest.raises(ValueError, match=f"VLAN {vlan!r}"):
        JunosDriver(nowhere).apply([PortChange("ge-0/0/2", vlan)])  # type: ignore[arg-type]


def test_one_port_two_vlans_is_refused(nowhere: SwitchTarget) -> None:
    with pytest.raises(ValueError, match="two VLANs"):
        JunosDriver(nowhere).apply([PortChange("ge-0/0/2", 10), PortChange("ge-0/0/2", 11)])


def test_unreachable_switch_is_named(nowhere: SwitchTarget) -> None:
    with pytest.raises(SwitchUnreachable, match="switch rack9-tor") as raised:
        JunosDriver(nowhere, timeout=5).apply([PortChange("ge-0/0/2", 10)])
    assert raised.value.switch == "rack9-tor"


def test_wrong_password(sim: SimSwitch) -> None:
    target = SwitchTarget("sw1", sim.host, sim.port, "admin", "wrong")
    with pytest.raises(SwitchAuthError, match="switch sw1: login refused for user 'admin'"):
        JunosDriver(target).open()


def test_refused_commit_leaves_switch_unlocked_and_unchanged(sim: SimSwitch) -> None:
    before = sim.committed_text()
    sim.faults.fail_next_commit("dcd: interface ge-0/0/3 hardware failure")
    with JunosDriver(sim.target()) as driver:
        with pytest.raises(CommitRefused) as refused:
            driver.apply([PortChange("ge-0/0/3", 30), PortChange("ge-0/0/4", 40)])
        assert refused.value.ports == ("ge-0/0/3", "ge-0/0/4")
        assert "dcd: interface ge-0/0/3 hardware failure" in str(refused.value)
        assert str(refused.value).startswith("switch sw1 ports ge-0/0/3, ge-0/0/4: ")
        assert sim.lock_holder() is None
        assert sim.committed_text() == before == sim.candidate_text()
        driver.apply([PortChange("ge-0/0/3", 30)])  # the same session carries on
    assert sim.port_vlans()["ge-0/0/3"] == 30


def test_absent_port_is_refused_by_the_switch(sim: SimSwitch) -> None:
    with JunosDriver(sim.target()) as driver, pytest.raises(CommitRefused, match="ge-0/0/9"):
        driver.apply([PortChange("ge-0/0/9", 30)])
    assert sim.lock_holder() is None


def test_lock_held_elsewhere_is_retried_then_refused(sim: SimSwitch) -> None:
    holder = _holder(sim)
    holder.rpc("<lock-configuration/>")
    started = time.monotonic()
    with JunosDriver(sim.target(), lock_wait=0.8) as driver:
        with pytest.raises(SwitchLocked, match="configuration database locked by"):
            driver.apply([PortChange("ge-0/0/1", 10)])
        assert time.monotonic() - started >= 0.7  # it kept trying for its budget
        threading.Timer(0.3, holder.close_session).start()
        driver.lock_wait = 10
        driver.apply([PortChange("ge-0/0/1", 10)])  # succeeds once the holder leaves
    assert sim.port_vlans()["ge-0/0/1"] == 10


def test_slow_commits_fit_the_commit_timeout(sim: SimSwitch) -> None:
    sim.commit_latency = 1.2
    with JunosDriver(sim.target(), timeout=1.0, commit_timeout=10) as driver:
        driver.apply([PortChange("ge-0/0/1", 10)])
    sim.commit_latency = 0


def test_lost_confirming_commit_rolls_back_by_itself(sim: SimSwitch) -> None:
    """The safety net of commit confirmed: the reply to the confirmed commit is lost."""
    sim.faults.drop_next("commit-configuration", after=True)
    with JunosDriver(sim.target(), confirm_minutes=1) as driver:
        with pytest.raises(SwitchError, match="session lost during commit-configuration"):
            driver.apply([PortChange("ge-0/0/2", 20)])
        assert sim.port_vlans()["ge-0/0/2"] == 20 and sim.confirm_pending()
        deadline = time.monotonic() + 5
        while sim.port_vlans()["ge-0/0/2"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sim.port_vlans()["ge-0/0/2"] == 1
        driver.apply([PortChange("ge-0/0/2", 20)])  # reconnects on the next call
    assert sim.port_vlans()["ge-0/0/2"] == 20


def test_session_is_kept_and_reopened_after_a_drop(sim: SimSwitch) -> None:
    with JunosDriver(sim.target()) as driver:
        driver.apply([PortChange("ge-0/0/1", 10)])
        driver.apply([PortChange("ge-0/0/2", 10)])
        assert sim.session_count() == 1
        sim.drop_sessions()
        time.sleep(0.3)
        assert driver.facts() == {
            "model": "ex4300-48t",
            "version": "21.4R3-S5.4",
            "hostname": "sw1",
        }
    assert sim.commit_count() == 4
