"""The one drift rule, over every shape a port can read back as."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from metalnet.switches.base import PortState
from metalnet.switches.drift import describe, desired_text, in_sync

vlan_ids = st.integers(1, 4094)
states = st.builds(
    PortState,
    interface=st.just("ge-0/0/1"),
    vlan=st.none() | vlan_ids,
    enabled=st.booleans(),
    vlans=st.lists(vlan_ids, max_size=3).map(tuple),
    mode=st.sampled_from(["access", "trunk"]),
    native_vlan=st.none() | vlan_ids,
)


@given(desired=vlan_ids, enabled=st.booleans(), actual=states)
def test_in_sync_only_for_a_clean_access_port_with_exactly_the_desired_vlan_and_enabled(
    desired: int, enabled: bool, actual: PortState
) -> None:
    clean = (
        actual.enabled == enabled
        and actual.mode == "access"
        and actual.native_vlan is None
        and list(actual.vlans) == [desired]
    )
    assert in_sync(desired, actual, enabled) == clean
    assert in_sync(desired, actual) == in_sync(desired, actual, True)


def test_a_port_disabled_by_hand_drifts_from_an_enabled_wish_and_the_other_way() -> None:
    disabled = PortState("ge-0/0/1", 10, enabled=False, vlans=(10,))
    assert not in_sync(10, disabled) and in_sync(10, disabled, enabled=False)
    assert not in_sync(10, PortState("ge-0/0/1", 10, vlans=(10,)), enabled=False)
    assert describe(disabled) == "access VLAN 10 disabled"
    assert desired_text(10, False) == "VLAN 10 disabled" and desired_text(10) == "VLAN 10"


def test_the_trunk_that_fooled_switch_check_is_drift() -> None:
    trunk = PortState("ge-0/0/1", None, vlans=(10, 999), mode="trunk")
    assert not in_sync(10, trunk)
    assert describe(trunk) == "trunk VLAN 10,999"
    assert not in_sync(100, PortState("ge-0/0/1", 100, vlans=(100,), native_vlan=5))
    assert not in_sync(100, None)
    assert in_sync(None, None)
