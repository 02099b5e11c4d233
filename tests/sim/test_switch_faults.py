"""Locks, failed commits, dropped sessions, latency and injected faults."""

from __future__ import annotations

import threading
import time

import pytest
from ncclient.operations import RPCError
from ncclient.transport import TransportError

from metalnet.sim.switch import SimFleet, SimSwitch

MOVE = (
    "interfaces { ge-0/0/%d { unit 0 { family ethernet-switching {"
    " replace: vlan { members %s; } } } } }"
)


def _wait(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_lock_is_exclusive_between_sessions(switch: SimSwitch, connect) -> None:
    holder, other = connect(switch), connect(switch)
    holder.rpc("<lock-configuration/>")
    with pytest.raises(RPCError, match="configuration database locked by") as denied:
        other.rpc("<lock-configuration/>")
    assert denied.value.tag == "lock-denied"
    assert f"(pid {holder.session_id})" in denied.value.message
    with pytest.raises(RPCError, match="configuration database locked"):
        other.load_configuration(format="text", config="vlans { v2 { vlan-id 2; } }")
    with pytest.raises(RPCError, match="configuration database locked"):
        other.commit()
    holder.rpc("<unlock-configuration/>")
    other.rpc("<lock-configuration/>")
    assert switch.lock_holder() == int(other.session_id)


def test_failed_validation_changes_nothing_and_frees_the_lock(switch: SimSwitch, connect) -> None:
    before = switch.committed_text()
    nc = connect(switch)
    nc.rpc("<lock-configuration/>")
    nc.load_configuration(format="text", action="replace", config=MOVE % (1, "nowhere"))
    with pytest.raises(RPCError) as refused:
        nc.commit()
    messages = [e.message.strip() for e in refused.value.errors]
    assert "l2ald: vlan nowhere referenced by interface ge-0/0/1.0 is not defined" in messages
    assert messages[-1] == "configuration check-out failed"
    nc.load_configuration(format="text", config="vlans { big { vlan-id 4095; } }")
    with pytest.raises(RPCError, match=r"Value 4095 is not within range \(1..4094\)"):
        nc.commit()
    nc.close_session()
    assert switch.committed_text() == before == switch.candidate_text()
    assert _wait(lambda: switch.lock_holder() is None)


def test_injected_commit_failure(switch: SimSwitch, connect) -> None:
    switch.faults.fail_next_commit("mgd: commit blocked by test")
    nc = connect(switch)
    nc.load_configuration(format="text", config=MOVE % (2, "default"))
    nc.load_configuration(format="text", config="vlans { v2 { vlan-id 2; } }")
    with pytest.raises(RPCError, match="mgd: commit blocked by test"):
        nc.commit()
    assert switch.commit_count() == 0
    nc.commit()  # one-shot: the next commit goes through
    assert switch.commit_count() == 1


def test_session_dropped_mid_change_applies_nothing(switch: SimSwitch, connect) -> None:
    before = switch.committed_text()
    switch.faults.drop_next("commit")
    nc = connect(switch)
    nc.rpc("<lock-configuration/>")
    nc.load_configuration(
        format="text", action="replace", config=MOVE % (3, "v3") + "vlans { v3 { vlan-id 3; } }"
    )
    with pytest.raises(TransportError):
        nc.commit()
    assert _wait(lambda: switch.lock_holder() is None)
    assert switch.committed_text() == before == switch.candidate_text()
    assert switch.session_count() == 0


def test_drop_after_commit_applied(switch: SimSwitch, connect) -> None:
    switch.faults.drop_next("commit", after=True)
    nc = connect(switch)
    nc.rpc("<lock-configuration/>")
    nc.load_configuration(
        format="text", action="replace", config="vlans { v3 { vlan-id 3; } }" + MOVE % (3, "v3")
    )
    with pytest.raises(TransportError):
        nc.commit()
    assert switch.port_vlans()["ge-0/0/3"] == 3  # applied, though the reply never came
    assert _wait(lambda: switch.lock_holder() is None)


def test_confirmed_commit_rolls_back_without_confirmation(switch: SimSwitch, connect) -> None:
    seen: list[int | None] = []
    switch.on_commit(lambda sw, vlans: seen.append(vlans["ge-0/0/6"]))
    nc = connect(switch)
    nc.load_configuration(
        format="text", action="replace", config="vlans { v6 { vlan-id 6; } }" + MOVE % (6, "v6")
    )
    nc.rpc(
        "<commit-configuration><confirmed/><confirm-timeout>1</confirm-timeout></commit-configuration>"
    )
    assert switch.port_vlans()["ge-0/0/6"] == 6
    assert _wait(lambda: switch.port_vlans()["ge-0/0/6"] == 1)
    assert seen == [6, 1]
    assert "v6" not in switch.candidate_text()


def test_stall_keeps_the_session_silent(switch: SimSwitch, connect) -> None:
    switch.faults.stall_next("get-software-information", 0.6)
    nc = connect(switch)
    started = time.monotonic()
    nc.rpc("<get-software-information/>")
    assert time.monotonic() - started >= 0.6


def test_slow_commit_does_not_block_other_switches(connect) -> None:
    with SimFleet() as fleet:
        slow = fleet.add("slow", ports=4, commit_latency=1.5)
        fast = fleet.add("fast", ports=4)
        slow_nc, fast_nc = connect(slow), connect(fast)
        slow_nc.load_configuration(format="text", config="vlans { v2 { vlan-id 2; } }")
        events: list[str] = []
        committer = threading.Thread(
            target=lambda: (slow_nc.commit(), events.append("slow commit"))
        )
        committer.start()
        time.sleep(0.2)
        assert slow.commit_count() == 0  # still committing
        fast_nc.load_configuration(format="text", config="vlans { v2 { vlan-id 2; } }")
        fast_nc.commit()
        events.append("fast commit")
        committer.join()
        assert events == ["fast commit", "slow commit"]
        assert slow.commit_count() == 1
        for nc in (slow_nc, fast_nc):  # before the fleet stops under them
            nc.close_session()


def test_out_of_band_change_and_callback(switch: SimSwitch) -> None:
    changes: list[dict[str, int | None]] = []
    switch.on_commit(lambda sw, vlans: changes.append(vlans))
    switch.set_port_vlan_out_of_band("ge-0/0/5", 300)
    switch.set_port_vlan_out_of_band("ge-0/0/6", 1)
    switch.set_port_vlan_out_of_band("ge-0/0/6", None)
    assert [c["ge-0/0/5"] for c in changes] == [300, 300, 300]
    assert [c["ge-0/0/6"] for c in changes] == [1, 1, None]
    assert "vlan300 {" in switch.committed_text()
    assert "default" in switch.committed_text()  # vlan 1 reused by its existing name
    with pytest.raises(ValueError, match="5000"):
        switch.set_port_vlan_out_of_band("ge-0/0/5", 5000)


def test_state_file_survives_restart(tmp_path) -> None:
    state = tmp_path / "sw.conf"
    with SimSwitch.running(ports=4, state_file=state) as sw:
        sw.set_port_vlan_out_of_band("ge-0/0/2", 77)
    assert "vlan77" in state.read_text()
    with SimSwitch.running(ports=4, state_file=state) as sw:
        assert sw.port_vlans()["ge-0/0/2"] == 77


def test_kill_session_releases_its_lock(switch: SimSwitch, connect) -> None:
    holder, admin = connect(switch), connect(switch)
    holder.rpc("<lock-configuration/>")
    admin.rpc(f"<kill-session><session-id>{holder.session_id}</session-id></kill-session>")
    admin.rpc("<lock-configuration/>")
    assert switch.lock_holder() == int(admin.session_id)
