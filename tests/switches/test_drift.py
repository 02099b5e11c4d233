"""The one drift rule, over every shape a port can read back as."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from metalnet.switches.base import PortState
from metalnet.switches.drift import describe, in_sync

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


@given(desired=vlan_ids, actual=states)
def test_in_sync_only_for_a_clean_access_port_with_exactly_the_desired_vlan(
    desired: int, actual: PortState
) -> None:
    clean = (
        actual.enabled
        and actual.mode == "access"
        and actual.native_vlan is None
        and list(actual.vlans) == [desired]
    )
    assert in_sync(desired, actual) == clean


def test_the_trunk_that_fooled_switch_check_is_drift() -> None:
    trunk = PortState("ge-0/0/1", None, vlans=(10, 999), mode="trunk")
    assert not in_sync(10, trunk)
    assert describe(trunk) == "trunk VLAN 10,999"
    assert not in_sync(100, PortState("ge-0/0/1", 100, vlans=(100,), native_vlan=5))
    assert not in_sync(100, None)
    assert in_sync(None, None)
