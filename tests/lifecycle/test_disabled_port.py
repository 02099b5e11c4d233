"""A node whose BMC does not power it off may still run a tenant's OS: its port leaves
the project VLAN *disabled* (the service VLAN, passing nothing), never enabled on the
provisioning network. Over the lab: real NETCONF to the switch simulator, Redfish BMCs
that stall, agents that erase the disk. Back-off runs on the virtual clock.
"""

from __future__ import annotations

from pathlib import Path

from labworld import world_with
from sqlalchemy import select
from test_lifecycle import spawn, wait_state

from metalnet.controller import Controller
from metalnet.db.models import InstanceEvent, Node
from metalnet.lifecycle import instances
from metalnet.lifecycle.states import SPAWN, Step
from metalnet.power.base import display_url
from metalnet.sim.lab.faults.rig import wait_until
from metalnet.switches.base import PortState
from metalnet.switches.junos import JunosDriver
from metalnet.switches.service import SwitchService


def read_port(node) -> PortState:
    """The node's port as the switch's committed configuration says, over NETCONF."""
    with JunosDriver(node.switch.target()) as driver:
        return driver.read_ports([node.interface])[node.interface]


def node_reason(world) -> str:
    with world.db.session() as s:
        return s.scalar(select(Node.state_reason).where(Node.name == "n1")) or ""


def assert_disabled_in_service(world, node, caplog) -> None:
    """Port: service VLAN, disabled, cut off; instance and node in error saying so.

    A failed spawn records the error first, then tries the power-off and moves the
    port: the node's reason says "disabled" last, so it is waited for (deadline 60 s).
    """
    assert wait_until(lambda: "disabled" in node_reason(world), 60.0), node_reason(world)
    state = read_port(node)
    assert (state.vlans, state.enabled) == ((world.settings.service_vlan,), False), state
    assert node.port_vlan() is None  # no bridge: neither the service network nor anyone
    where = f"port {node.switch.name} {node.interface} is disabled in the service VLAN"
    with world.db.session() as s:
        inst = instances.get_instance(s, "web")
        db_node = s.scalar(select(Node).where(Node.name == "n1"))
        assert inst.state == "error" and db_node.state == "error"
        assert where in db_node.state_reason and "could not power off" in db_node.state_reason
        assert f"BMC {display_url(db_node.bmc_url)} " in db_node.state_reason
        messages = s.scalars(
            select(InstanceEvent.message).where(InstanceEvent.instance_id == inst.id)
        )
        assert any(where in m for m in messages)
    assert where in caplog.text


def admin_moves_it_and_it_stays_disabled(world, node) -> None:
    """`switch port-set` (the switch service's move) sets the VLAN only: a port wanted
    disabled stays so; only a power-off that succeeded enables it."""
    service = SwitchService(world.db)
    try:
        vlan = world.settings.service_vlan
        [outcome] = service.set_ports([(node.switch.name, node.interface, vlan)])
    finally:
        service.close()
    assert outcome.ok and not outcome.change.enabled, outcome
    assert not read_port(node).enabled and node.port_vlan() is None


def delete_once_the_bmc_answers(world, node) -> None:
    """The operator's way out: the BMC answers again, the instance is deleted again."""
    node.bmc.stall(False)
    with world.db.session() as s:
        instances.delete_instance(s, "web")
    assert wait_state(world, "web", ("deleted", "error")).state == "deleted"
    state = read_port(node)
    assert (state.vlans, state.enabled) == ((world.settings.service_vlan,), True), state
    assert node.port_vlan() == world.settings.service_vlan
    assert world.lab.disk_is_zero(node)
    with world.db.session() as s:
        db_node = s.scalar(select(Node).where(Node.name == "n1"))
        assert (db_node.state, db_node.state_reason) == ("available", None)
        assert db_node.nics[0].port.desired_enabled


def test_terminate_whose_bmc_never_powers_off_disables_the_port(
    tmp_path: Path, virtual_clock, caplog
) -> None:
    with world_with(tmp_path, nodes=1, bmc_timeout=0.5) as world:
        node = world.node("n1")
        with Controller(world.db):
            spawn(world, "web", "n1")
            assert wait_state(world, "web", ("active", "error")).state == "active"
            assert node.running == "tenant image"
            node.bmc.stall()  # never answers the power-off, however often asked
            with world.db.session() as s:
                instances.delete_instance(s, "web")
            inst = wait_state(world, "web", ("deleted", "error"))
            assert "step port_to_service failed" in inst.error
            assert node.running == "tenant image"  # still on: the reason for all this
            assert_disabled_in_service(world, node, caplog)
            admin_moves_it_and_it_stays_disabled(world, node)
            delete_once_the_bmc_answers(world, node)


def desired_of(world) -> tuple[int | None, bool]:
    """The desired state of n1's port in the database: (VLAN, enabled)."""
    with world.db.session() as s:
        port = s.scalar(select(Node).where(Node.name == "n1")).nics[0].port
        return port.desired_vlan, port.desired_enabled


def test_a_spawn_failing_after_its_port_reached_the_project_disables_it(
    tmp_path: Path, virtual_clock, caplog
) -> None:
    """The BMC stops answering at the spawn's power-on, after the port went to the
    project VLAN: the spawn fails, its power-off fails too, so its port goes to the
    service VLAN disabled (the desired state says so before the power-off is tried)."""
    with world_with(tmp_path, nodes=1, bmc_timeout=0.5) as world:
        node = world.node("n1")

        def stall_at_power_on(job, step):
            if job.state == SPAWN.state and step == Step.POWER_ON:
                node.bmc.stall()

        with Controller(world.db, on_start=stall_at_power_on):
            spawn(world, "web", "n1")
            inst = wait_state(world, "web", ("active", "error"))
            assert inst.state == "error" and "step power_on failed" in inst.error
            assert desired_of(world) == (world.settings.service_vlan, False)
            assert_disabled_in_service(world, node, caplog)
            delete_once_the_bmc_answers(world, node)


def test_a_failed_spawn_wants_its_port_disabled_until_the_node_is_off(
    tmp_path: Path, virtual_clock, monkeypatch
) -> None:
    """The same failure, with a BMC that answers the power-off's second try: the port is
    wanted disabled from the failure until the power-off succeeded (the desired state
    read at the BMC's back-off), then enabled in the service VLAN."""
    from metalnet import retry

    with world_with(tmp_path, nodes=1, bmc_timeout=0.5) as world:
        node = world.node("n1")
        wished: list[tuple[int | None, bool]] = []

        def stall_at_power_on(job, step):
            if job.state == SPAWN.state and step == Step.POWER_ON:
                node.bmc.stall()

        back_off = retry.sleep  # the virtual clock's

        def answer_at_the_back_off(seconds: float) -> None:
            if node.bmc.stalled:
                wished.append(desired_of(world))
                node.bmc.stall(False)
            back_off(seconds)

        monkeypatch.setattr(retry, "sleep", answer_at_the_back_off)
        with Controller(world.db, on_start=stall_at_power_on):
            spawn(world, "web", "n1")
            inst = wait_state(world, "web", ("active", "error"))
            assert inst.state == "error" and "step power_on failed" in inst.error
            # the error is recorded first; the power-off and the port's move follow
            wanted = (world.settings.service_vlan, True)
            assert wait_until(lambda: desired_of(world) == wanted, 60.0), desired_of(world)
            in_service = PortState(node.interface, wanted[0], vlans=(wanted[0],))
            assert wait_until(lambda: read_port(node) == in_service, 60.0), read_port(node)
        assert wished == [(world.settings.service_vlan, False)]
        assert node.port_vlan() == world.settings.service_vlan
        assert node.power.state.value == "off"
