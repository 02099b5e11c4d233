"""A node whose BMC stalls before its instance is deleted keeps running the tenant's OS:
the isolation invariant, judging the switch's port (over NETCONF) against what the node
runs (on its simulated BMC and disk), allows that OS only on its project VLAN or on a
disabled port, never enabled in the service VLAN.

The model's sequence, driven deterministically: a tenant's instance active, its node's
BMC stalls (Redfish requests received, never answered), the tenant deletes the instance,
the lifecycle settles; then the BMC answers again and a second delete frees the node.
With the terminate moving the port to the service VLAN *enabled* after a failed
power-off, the invariant reports the tenant's OS there.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from metalnet.lifecycle.invariants import tenant_os_violation
from metalnet.power import PowerState
from metalnet.sim.lab.model import ModelLab, until
from metalnet.switches.base import PortState
from metalnet.switches.guard import Owner

VLANS = (10, 99, 100, 101)  # service, parking, two projects: any VLAN is judged alike

SPEC = {"name": "web", "network": "net", "node": "n1"}


def settle_judged(lab: ModelLab) -> None:
    """`ModelLab.settle`, judging the isolation invariant at every poll on the way and
    once the lifecycle has ended."""

    def settled() -> bool:
        busy = lab.busy()
        found = lab.isolation_violations()
        assert not found, "\n".join(found)
        return not busy

    until(180, "the lifecycle to settle", settled, lambda: "; ".join(lab.busy()))


def states(lab: ModelLab) -> tuple[str, str]:
    """The state of the tenant's instance and of its node n1."""
    [(_, _, _, state, _, _)] = lab.instances()
    return state, lab.node_states()["n1"]


def desired_shown(lab: ModelLab, interface: str) -> tuple[int, bool]:
    """(desired VLAN, desired enabled) of a port, as `metalnet switch show --json` says."""
    shown = lab.admin("switch", "show", "tor1", "--json")
    assert shown.code == 0, shown.output
    [port] = [p for p in json.loads(shown.output)["ports"] if p["interface"] == interface]
    return port["desired_vlan"], port["desired_enabled"]


def test_a_tenant_os_whose_bmc_stalls_at_delete_never_gets_an_enabled_port_outside_its_vlan(
    lab: ModelLab, virtual_clock
) -> None:
    world, node = lab.world, lab.node("n1")
    spec = {**SPEC, "image_url": world.lab.image_url, "sha256": world.lab.image_sha256}
    assert lab.tenant("alpha").post("/v1/instances", json=spec).status_code == 202
    settle_judged(lab)
    assert states(lab) == ("active", "active")
    assert node.seen().tenant_os and node.port_vlan() == world.vlans["alpha"]

    node.bmc.stall()
    assert lab.tenant("alpha").delete("/v1/instances/web").status_code == 202
    settle_judged(lab)
    assert states(lab) == ("error", "error")
    assert node.seen().tenant_os  # the power-off never happened: the case this is about
    assert lab.isolation_violations() == []
    port = lab.reader.read_ports("tor1", [node.interface])[node.interface]
    assert (port.vlans, port.enabled) == ((world.settings.service_vlan,), False), port
    assert desired_shown(lab, node.interface) == (world.settings.service_vlan, False)

    node.bmc.stall(False)  # the operator's way out: the BMC answers, delete again
    assert lab.tenant("alpha").delete("/v1/instances/web").status_code == 202
    settle_judged(lab)
    assert states(lab) == ("deleted", "available")
    assert node.power.state is PowerState.OFF and not node.seen().tenant_os
    port = lab.reader.read_ports("tor1", [node.interface])[node.interface]
    assert (port.vlans, port.enabled) == ((world.settings.service_vlan,), True), port
    assert desired_shown(lab, node.interface) == (world.settings.service_vlan, True)


@given(
    vlans=st.lists(st.sampled_from(VLANS), max_size=3, unique=True).map(tuple),
    native=st.none() | st.sampled_from(VLANS),
    mode=st.sampled_from(("access", "trunk")),
    enabled=st.booleans(),
    project_vlan=st.none() | st.sampled_from(VLANS),
)
def test_a_tenant_os_may_reach_its_own_project_vlan_or_nothing(
    vlans: tuple[int, ...], native: int | None, mode: str, enabled: bool, project_vlan: int | None
) -> None:
    """Allowed exactly when the port passes nothing, or only its instance's project VLAN
    as a clean access port (the one drift rule's "in sync")."""
    vlan = vlans[0] if len(vlans) == 1 else None
    port = PortState("ge-0/0/0", vlan, enabled, vlans, mode, native)
    owner = Owner(node="n1", instance=project_vlan and "web", project_vlan=project_vlan)
    problem = tenant_os_violation("n1", port, owner)
    reaches = (set(vlans) | {native}) - {None} if enabled else set()
    own_only = (mode, vlans, native) == ("access", (project_vlan,), None)
    assert (problem is None) == (not reaches or (project_vlan is not None and own_only)), problem
    if problem is not None:
        assert problem.startswith("node n1 runs a tenant's OS on an enabled port"), problem
