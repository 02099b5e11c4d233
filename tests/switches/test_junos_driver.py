"""The Junos driver against the simulator over real SSH, in both Layer 2 dialects."""

from __future__ import annotations

import threading
import time

import pytest
from lxml import etree
from ncclient import manager

from metalnet.sim.lab.faults.rig import wait_until
from metalnet.sim.switch import SimSwitch, text
from metalnet.switches.base import (
    CandidateModified,
    CommitRefused,
    PortChange,
    PortState,
    SwitchAuthError,
    SwitchError,
    SwitchLocked,
    SwitchSessionLost,
    SwitchTarget,
    SwitchUnreachable,
)
from metalnet.switches.drift import in_sync
from metalnet.switches.junos import Dialect, JunosDriver
from metalnet.switches.junos import driver as junos_driver


def _unlocked(sim: SimSwitch) -> bool:
    """The driver's unlock is sent, not waited for: the switch releases the lock once it
    has handled it, with no further request from the driver (deadline 10 s)."""
    return wait_until(lambda: sim.lock_holder() is None, 10.0)


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
        assert result.switch == "sw1" and len(result.changes) == 3 and result.ok
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
    assert "vlan100 {" in committed
    assert committed.count("vlan-id 1;") == 1  # VLAN 1 exists already: not defined again


def test_dialect_is_learned_from_the_model(sim: SimSwitch) -> None:
    with JunosDriver(sim.target()) as driver:
        driver.apply([PortChange("ge-0/0/1", 100)])
        expected = Dialect.of_model(driver.facts()["model"])
        assert driver.dialect is expected
    config = text.parse_text(sim.committed_text())
    [family] = config.xpath(
        "interfaces/interface[name='ge-0/0/1']/unit[name='0']/family/ethernet-switching"
    )
    mode = "interface-mode" if expected is Dialect.ELS else "port-mode"
    assert [c.tag for c in family] == [mode, "vlan"] and family.findtext(mode) == "access"


def test_stage_leaves_a_commit_that_rolls_back_unless_confirmed(sim: SimSwitch) -> None:
    with JunosDriver(sim.target(), confirm_minutes=1) as driver:
        driver.stage([PortChange("ge-0/0/1", 100)])
        assert driver.pending and sim.confirm_pending() and sim.commit_count() == 1
        holder = sim.lock_holder()  # kept until the confirmation: no one else commits
        assert holder is not None
        driver.stage([PortChange("ge-0/0/2", 200)])  # one commit per transaction
        assert sim.commit_count() == 2 and sim.lock_holder() == holder
        driver.confirm()
        assert not driver.pending and not sim.confirm_pending() and sim.commit_count() == 3
        assert _unlocked(sim)
        driver.confirm()  # nothing pending: no commit
        assert sim.commit_count() == 3
    assert sim.port_vlans()["ge-0/0/1"] == 100 and sim.port_vlans()["ge-0/0/2"] == 200


def test_trunk_leftovers_are_drift_and_applying_removes_them(sim: SimSwitch) -> None:
    with JunosDriver(sim.target()) as driver:
        dialect = driver.dialect
    # an operator's trunk, in the switch's own dialect (native VLAN: interface level on
    # ELS, inside the family without ELS)
    family = (
        "interface-mode trunk; replace: vlan { members [ vlan100 vlan5 ]; }"
        if dialect is Dialect.ELS
        else "port-mode trunk; native-vlan-id 5; replace: vlan { members [ vlan100 vlan5 ]; }"
    )
    native = "native-vlan-id 5; " if dialect is Dialect.ELS else ""
    trunk = (
        f"interfaces {{ ge-0/0/3 {{ {native}unit 0 {{ family ethernet-switching {{ {family} }} "
        "} } }\nvlans { vlan100 { vlan-id 100; } vlan5 { vlan-id 5; } }"
    )
    holder = _holder(sim)
    holder.load_configuration(format="text", action="replace", config=trunk)
    holder.commit()
    holder.close_session()
    with JunosDriver(sim.target()) as driver:
        before = driver.read_ports(["ge-0/0/3"])["ge-0/0/3"]
        assert before.mode == "trunk" and before.native_vlan == 5 and before.vlans == (100, 5)
        assert not in_sync(100, before)
        driver.apply([PortChange("ge-0/0/3", 100)])
        after = driver.read_ports(["ge-0/0/3"])["ge-0/0/3"]
    assert in_sync(100, after), after
    assert "native-vlan-id" not in sim.committed_text()


def test_existing_vlan_name_is_never_renumbered(sim: SimSwitch) -> None:
    holder = _holder(sim)
    holder.load_configuration(format="text", config="vlans { vlan7 { vlan-id 70; } }")
    holder.commit()
    holder.close_session()
    with JunosDriver(sim.target()) as driver:
        driver.apply([PortChange("ge-0/0/1", 7), PortChange("ge-0/0/2", 70)])
        ports = driver.read_ports(["ge-0/0/1", "ge-0/0/2"])
    assert ports["ge-0/0/1"].vlans == (7,) and ports["ge-0/0/2"].vlans == (70,)
    committed = sim.committed_text()
    assert "vlan7-2 {" in committed and "vlan-id 70;" in committed


def test_someone_elses_uncommitted_changes_are_never_committed(sim: SimSwitch) -> None:
    """An operator's forgotten `configure` edit: refused clearly, nothing committed."""
    holder = _holder(sim)
    holder.load_configuration(format="text", config="interfaces { ge-0/0/5 { disable; } }")
    before = sim.committed_text()
    with JunosDriver(sim.target()) as driver:
        with pytest.raises(CandidateModified, match="configuration database modified") as refused:
            driver.apply([PortChange("ge-0/0/1", 100)])
        assert "metalnet will not commit them" in str(refused.value)
    assert sim.committed_text() == before
    assert "disable" in sim.candidate_text()  # their edit is theirs to commit or discard
    assert sim.lock_holder() is None
    holder.close_session()


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
    with pytest.raises(ValueError, match="two states"):
        JunosDriver(nowhere).apply([PortChange("ge-0/0/2", 10), PortChange("ge-0/0/2", 11)])
    with pytest.raises(ValueError, match=r"ge-0/0/2->10 and ge-0/0/2->10 disabled"):
        JunosDriver(nowhere).apply(
            [PortChange("ge-0/0/2", 10), PortChange("ge-0/0/2", 10, enabled=False)]
        )


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
        assert _unlocked(sim)
        assert sim.committed_text() == before == sim.candidate_text()
        driver.apply([PortChange("ge-0/0/3", 30)])  # the same session carries on
    assert sim.port_vlans()["ge-0/0/3"] == 30


def test_absent_port_is_refused_before_loading(sim: SimSwitch) -> None:
    """Junos commits configuration for an absent interface; the driver checks first."""
    before = sim.commit_count()
    driver = JunosDriver(sim.target())
    with driver, pytest.raises(CommitRefused, match="no such interface") as refused:
        driver.apply([PortChange("ge-0/0/9", 30), PortChange("ge-0/0/1", 30)])
    assert refused.value.ports == ("ge-0/0/9",)
    assert sim.lock_holder() is None and sim.commit_count() == before


def test_lock_held_elsewhere_is_retried_for_its_budget(
    sim: SimSwitch, virtual_clock: list[float]
) -> None:
    holder = _holder(sim)
    holder.rpc("<lock-configuration/>")
    driver = JunosDriver(sim.target(), lock_wait=8)
    with driver, pytest.raises(SwitchLocked, match="configuration database locked by"):
        driver.apply([PortChange("ge-0/0/1", 10)])
    assert sum(virtual_clock) == pytest.approx(8, abs=0.5)  # it kept trying for its budget
    assert virtual_clock[:3] == [0.1, 0.2, 0.4]
    holder.close_session()


def test_lock_is_taken_once_the_holder_leaves(sim: SimSwitch) -> None:
    holder = _holder(sim)
    holder.rpc("<lock-configuration/>")
    threading.Timer(0.3, holder.close_session).start()
    with JunosDriver(sim.target(), lock_wait=30) as driver:
        driver.apply([PortChange("ge-0/0/1", 10)])
    assert sim.port_vlans()["ge-0/0/1"] == 10


def test_a_refused_lock_voids_the_reads_sent_with_it(sim: SimSwitch) -> None:
    """The lock, the candidate check and the reads go out together; when the lock is
    refused, what was read beside it (here an operator's edit, discarded when they
    leave) must not decide the transaction: it is read again once the lock is ours."""
    holder = _holder(sim)
    holder.rpc("<lock-configuration/>")
    holder.load_configuration(format="text", config="interfaces { ge-0/0/5 { disable; } }")
    threading.Timer(0.3, holder.close_session).start()  # the lock and the edit go with it
    with JunosDriver(sim.target(), lock_wait=30) as driver:
        driver.apply([PortChange("ge-0/0/1", 10)])
    assert sim.port_vlans()["ge-0/0/1"] == 10
    assert "disable" not in sim.committed_text()


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
        # Junos rolls back when the session that made the confirmed commit ends, at
        # the latest when the confirm timer runs out
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
        facts = driver.facts()  # reconnects
        assert facts["hostname"] == "sw1"
        assert (facts["model"], facts["version"]) in (
            ("ex4300-48t", "21.4R3-S5.4"),
            ("ex4200-48t", "12.3R12.4"),
        )
    assert sim.commit_count() == 4


@pytest.mark.parametrize(
    ("statement", "source"),
    [
        (
            "interfaces { interface-range servers { member ge-0/0/6; "
            "unit 0 { family ethernet-switching { vlan { members vlan100; } } } } }",
            "interface-range servers",
        ),
        (
            "groups { access-ports { interfaces { <ge-0/0/6> { unit 0 { family "
            "ethernet-switching { vlan { members vlan100; } } } } } } }\n"
            "apply-groups access-ports;",
            "group access-ports",
        ),
        (
            "groups { edge { interfaces { ge-0/0/6 { unit 0 { family ethernet-switching { "
            "vlan { members vlan100; } } } } } } }\n"
            "interfaces { ge-0/0/6 { apply-groups edge; } }",
            "group edge",
        ),
    ],
)
def test_ports_governed_by_ranges_or_groups_are_refused(
    sim: SimSwitch, statement: str, source: str
) -> None:
    """metalnet's own `members` would add a second VLAN to the inherited one."""
    holder = _holder(sim)
    holder.load_configuration(
        format="text", config=statement + "\nvlans { vlan100 { vlan-id 100; } }"
    )
    holder.commit()
    holder.close_session()
    before = sim.committed_text()
    driver = JunosDriver(sim.target())
    with driver, pytest.raises(CommitRefused, match=f"ge-0/0/6 from {source}") as refused:
        driver.apply([PortChange("ge-0/0/6", 200), PortChange("ge-0/0/1", 200)])
    assert refused.value.ports == ("ge-0/0/6",)
    assert sim.committed_text() == before and sim.lock_holder() is None
    with JunosDriver(sim.target()) as driver:
        assert driver.read_ports(["ge-0/0/6"])["ge-0/0/6"].vlans == (100,)  # inherited


def test_a_plain_move_draws_no_warning(sim: SimSwitch, caplog: pytest.LogCaptureFixture) -> None:
    with JunosDriver(sim.target()) as driver:
        driver.apply([PortChange("ge-0/0/1", 100)])
        driver.apply([PortChange("ge-0/0/1", 200)])
    assert "warns" not in caplog.text


def test_commit_warnings_are_logged_not_failures(
    sim: SimSwitch, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults.warn_on_commit("requires 'ef' license")
    with JunosDriver(sim.target()) as driver:
        record = driver.apply([PortChange("ge-0/0/1", 100)])
    assert record.ok and sim.port_vlans()["ge-0/0/1"] == 100 and not sim.confirm_pending()
    assert sim.commit_count() == 2  # one commit confirmed, one confirmation: no retries
    assert "requires 'ef' license" in caplog.text


def test_a_commit_that_reads_back_otherwise_is_rolled_back(
    sim: SimSwitch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No simulator reads back otherwise, so the read-back parser is replaced (a stand-in
    for a switch that silently ignores a statement): the driver ends its session and
    the switch rolls the unconfirmed commit back, so the failure means not applied."""
    monkeypatch.setattr(
        junos_driver.parse,
        "port_states",
        lambda _config, ports: {p: PortState(p, 999, vlans=(999,)) for p in ports},
    )
    driver = JunosDriver(sim.target())
    with driver, pytest.raises(SwitchError, match="reads back otherwise") as failed:
        driver.apply([PortChange("ge-0/0/2", 20)])
    assert failed.value.ports == ("ge-0/0/2",)
    deadline = time.monotonic() + 5
    while sim.port_vlans()["ge-0/0/2"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.port_vlans()["ge-0/0/2"] == 1 and not sim.confirm_pending()


def test_a_transaction_begun_ahead_takes_its_replies_in_stage(sim: SimSwitch) -> None:
    """`begin` sends the lock and the reads before the ports are known: on a new
    session the interface listing goes with them, so an absent port is still refused
    before loading, and the lock is released."""
    before = sim.commit_count()
    with JunosDriver(sim.target()) as driver:
        driver.begin()
        assert wait_until(lambda: sim.lock_holder() is not None, 10.0)  # asked by begin
        with pytest.raises(CommitRefused, match="no such interface"):
            driver.stage([PortChange("ge-0/0/9", 30)])
        assert _unlocked(sim) and sim.commit_count() == before
        driver.begin()
        driver.apply([PortChange("ge-0/0/2", 20)])
    assert sim.port_vlans()["ge-0/0/2"] == 20


def test_a_transaction_begun_on_a_session_that_then_died_is_asked_again(sim: SimSwitch) -> None:
    """The replies to `begin` never come (the switch cuts the session on its lock):
    `stage` opens a new session and asks again, as for any session found dead at the
    start of a call."""
    with JunosDriver(sim.target()) as driver:
        driver.apply([PortChange("ge-0/0/1", 10)])
        sim.faults.drop_next("lock-configuration")
        driver.begin()
        driver.apply([PortChange("ge-0/0/1", 11)])
    assert sim.port_vlans()["ge-0/0/1"] == 11 and _unlocked(sim)


def test_end_releases_a_lock_begin_took(sim: SimSwitch) -> None:
    with JunosDriver(sim.target()) as driver:
        driver.begin()
        assert wait_until(lambda: sim.lock_holder() is not None, 10.0)  # asked by begin
        driver.end()
        assert _unlocked(sim)
        holder = _holder(sim)  # someone else may lock now
        holder.rpc("<lock-configuration/>")
        holder.close_session()


def test_a_session_that_ended_is_closed_before_its_waiters_hear_of_it(sim: SimSwitch) -> None:
    """A caller woken by the end of its session finds it closed, so reconnecting does
    not ask the dead session for a polite close (whose reply would never come)."""
    with JunosDriver(sim.target()) as driver:
        sim.faults.drop_next("get-software-information")
        pending = driver.session.send_rpc(etree.Element("get-software-information"))
        with pytest.raises(SwitchSessionLost):
            pending.result()
        assert not driver.session.connected


def _port_text(sim: SimSwitch, interface: str) -> str:
    """The committed stanza of one interface, as the switch renders it."""
    config = text.parse_text(sim.committed_text())
    [iface] = config.xpath(f"interfaces/interface[name='{interface}']")
    return etree.tostring(iface, encoding="unicode")


def test_disable_then_enable_round_trips_and_takes_the_port_off_the_data_plane(
    sim: SimSwitch, caplog: pytest.LogCaptureFixture
) -> None:
    """A disabled port keeps its VLAN in the configuration but switches nothing (the
    lab moves links by `port_vlans`); enabling deletes the statement, and neither
    direction draws a "statement not found" warning."""
    with JunosDriver(sim.target()) as driver:
        driver.apply([PortChange("ge-0/0/1", 100, enabled=False), PortChange("ge-0/0/2", 100)])
        states = driver.read_ports(["ge-0/0/1", "ge-0/0/2"])
        assert states["ge-0/0/1"] == PortState("ge-0/0/1", 100, enabled=False, vlans=(100,))
        assert in_sync(100, states["ge-0/0/1"], enabled=False)
        assert states["ge-0/0/2"].enabled
        assert sim.port_vlans()["ge-0/0/1"] is None and sim.port_vlans()["ge-0/0/2"] == 100
        assert "<disable/>" in _port_text(sim, "ge-0/0/1")

        driver.apply([PortChange("ge-0/0/1", 100, enabled=False)])  # again: nothing new
        driver.apply([PortChange("ge-0/0/1", 10)])
        state = driver.read_ports(["ge-0/0/1"])["ge-0/0/1"]
    assert in_sync(10, state) and sim.port_vlans()["ge-0/0/1"] == 10
    assert "disable" not in _port_text(sim, "ge-0/0/1")
    assert "warns" not in caplog.text


@pytest.mark.parametrize("level", ["interface", "unit"])
def test_a_port_disabled_by_hand_at_either_level_is_enabled_again(
    sim: SimSwitch, level: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Junos takes `disable` at the interface or the unit level ("disable (Interface)");
    both read back as disabled, and enabling the port deletes exactly the one there."""
    statement = "disable;" if level == "interface" else "unit 0 { disable; }"
    with JunosDriver(sim.target()) as driver:
        driver.apply([PortChange("ge-0/0/3", 100)])
        holder = _holder(sim)
        holder.lock()
        holder.load_configuration(
            format="text", config=f"interfaces {{ ge-0/0/3 {{ {statement} }} }}"
        )
        holder.commit()
        holder.unlock()
        holder.close_session()
        disabled = driver.read_ports(["ge-0/0/3"])["ge-0/0/3"]
        assert not disabled.enabled and not in_sync(100, disabled)
        assert sim.port_vlans()["ge-0/0/3"] is None
        driver.apply([PortChange("ge-0/0/3", 100)])
        state = driver.read_ports(["ge-0/0/3"])["ge-0/0/3"]
    assert in_sync(100, state) and sim.port_vlans()["ge-0/0/3"] == 100
    assert "disable" not in _port_text(sim, "ge-0/0/3")
    assert "warns" not in caplog.text
