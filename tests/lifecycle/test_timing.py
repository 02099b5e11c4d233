"""Requests timed against the lifecycle, over the lab (real NETCONF, Redfish, agents).

Rule: a terminate requested at any moment of a spawn ends in a full terminate (port
to the service VLAN, disk erased, node powered off and released). Rule: after the
deploy the node is powered off before its port moves to the project VLAN, and is
powered on only once the move is committed and read back; a failure after the deploy
leaves it powered off. Moments are chosen by the engine's step hooks, not by sleeps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from labworld import world_with
from sqlalchemy import select
from test_lifecycle import spawn, steps_seen, wait_state

from metalnet.controller import Controller
from metalnet.db.models import AgentTask, Node
from metalnet.lifecycle import boot, instances
from metalnet.lifecycle.invariants import node_state_violations
from metalnet.lifecycle.states import OPEN_TASK, SPAWN, TERMINATE, Step
from metalnet.power import PowerState

MOMENTS = [("start", step) for step in SPAWN.steps] + [("done", SPAWN.steps[-1])]


@pytest.mark.parametrize(("when", "step"), MOMENTS, ids=[f"{w}-{s}" for w, s in MOMENTS])
def test_terminate_at_any_moment_of_a_spawn_is_a_full_terminate(tmp_path, when, step) -> None:
    with world_with(tmp_path, nodes=1) as world:
        node = world.node("n1")
        requested: list[str] = []

        def request_delete(job, at):
            if job.state == SPAWN.state and at == step and not requested:
                with world.db.session() as s:
                    requested.append(instances.delete_instance(s, "web").state)

        hooks = {"on_start" if when == "start" else "on_step": request_delete}
        with Controller(world.db, **hooks):
            spawn(world, "web", "n1")
            inst = wait_state(world, "web", ("deleted", "error"))
        assert requested == ["deleting"]
        assert (inst.state, inst.error) == ("deleted", None)
        assert steps_seen(world, "web")[-len(TERMINATE.steps) :] == list(TERMINATE.steps)
        assert node.port_vlan() == world.settings.service_vlan
        assert world.lab.disk_is_zero(node)
        assert node.power.state == PowerState.OFF
        with world.db.session() as s:
            assert boot.entry_for(s, node.mac, "http://controller") is None
            db_node = s.scalar(select(Node).where(Node.name == "n1"))
            assert (db_node.state, db_node.agent_token_hash) == ("available", None)
            assert s.scalar(select(AgentTask).where(AgentTask.state.in_(OPEN_TASK))) is None


def power_at_commits(world, samples: list[tuple[int | None, PowerState, str]]):
    """Sample the node's power at every commit of its switch (on the switch itself)."""
    node = world.node("n1")

    def on_commit(switch, vlans):
        samples.append((vlans.get(node.interface), node.power.state, node.running))

    node.switch.on_commit(on_commit)


def test_tenant_image_is_never_on_outside_its_vlan_nor_while_the_port_moves(tmp_path) -> None:
    """At every switch commit of a spawn, the node is off unless the port is where the
    step it is in allows it to be powered: in the service VLAN before the deploy ended."""
    with world_with(tmp_path, nodes=1) as world:
        node = world.node("n1")
        samples: list[tuple[int | None, PowerState, str]] = []
        deployed: list[int] = []
        power_at_commits(world, samples)

        def after(job, step):
            if step == Step.DEPLOY:
                deployed.append(len(samples))

        with Controller(world.db, on_step=after):
            spawn(world, "web", "n1")
            assert wait_state(world, "web", ("active", "error")).state == "active"
        service, alpha = world.settings.service_vlan, world.vlans["alpha"]
        assert node.running == "tenant image" and node.port_vlan() == alpha
        [first_after_deploy] = deployed
        moves = [i for i in range(1, len(samples)) if samples[i][0] != samples[i - 1][0]]
        assert [samples[i][0] for i in moves][-1] == alpha  # the move into the project
        for i in moves:
            assert samples[i][1] == PowerState.OFF or samples[i][0] == service, samples
        for vlan, power, running in samples[first_after_deploy:]:
            assert power == PowerState.OFF, (vlan, power, running)
        assert "tenant image" not in {running for _, _, running in samples}


def test_a_tenant_os_never_runs_on_the_service_vlan_when_it_is_terminated(tmp_path) -> None:
    """Terminate powers the node off before its port leaves the project VLAN: at the
    commit that takes it to the service VLAN the tenant image no longer runs (a QEMU
    machine in `metalnet demo --vm` showed the tenant OS on the service VLAN before)."""
    with world_with(tmp_path, nodes=1) as world:
        node = world.node("n1")
        samples: list[tuple[int | None, PowerState, str]] = []
        with Controller(world.db):
            spawn(world, "web", "n1")
            assert wait_state(world, "web", ("active", "error")).state == "active"
            assert node.running == "tenant image"
            power_at_commits(world, samples)
            with world.db.session() as s:
                instances.delete_instance(s, "web")
            assert wait_state(world, "web", ("deleted", "error")).state == "deleted"
        service = world.settings.service_vlan
        _, power, running = next(sample for sample in samples if sample[0] == service)
        assert (power, running) == (PowerState.OFF, "off"), samples


def test_failed_move_into_the_project_leaves_the_node_off_in_the_service_vlan(
    tmp_path: Path, virtual_clock
) -> None:
    """Every commit fails once the spawn reaches port_to_project (a switch refusing all
    changes, injected on the simulator); the engine's retries run on a virtual clock."""
    with world_with(tmp_path, nodes=1) as world:
        node = world.node("n1")

        def refuse_commits(job, step):
            if step == Step.PORT_TO_PROJECT:
                node.switch.faults.take_commit_error = lambda: "configuration database locked"

        with Controller(world.db, on_start=refuse_commits):
            spawn(world, "web", "n1")
            inst = wait_state(world, "web", ("active", "error"))
        assert inst.state == "error" and "step port_to_project failed" in inst.error
        assert virtual_clock  # the step retried before giving up
        assert node.power.state == PowerState.OFF
        assert node.port_vlan() == world.settings.service_vlan
        assert not any("tenant image" in entry for entry in node.boots), node.boots
        with world.db.session() as s:
            db_node = s.scalar(select(Node).where(Node.name == "n1"))
            assert db_node.state == "error" and db_node.agent_token_hash is None


def test_terminate_retries_a_silent_bmc_and_moves_the_port_only_once_the_node_is_off(
    tmp_path: Path, virtual_clock, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """A BMC that swallows the terminate's power-off (BMCs hiccup) is asked again
    (POWER_OFF_RETRY); the port leaves the project VLAN with the node off. The BMC
    answers again when the engine backs off (on the virtual clock)."""
    from metalnet import retry

    with world_with(tmp_path, nodes=1, bmc_timeout=1.0) as world:
        node = world.node("n1")
        samples: list[tuple[int | None, PowerState, str]] = []
        with Controller(world.db):
            spawn(world, "web", "n1")
            assert wait_state(world, "web", ("active", "error")).state == "active"
            power_at_commits(world, samples)
            node.bmc.stall()
            back_off = retry.sleep

            def bmc_back_after_the_first_try(seconds: float) -> None:
                node.bmc.stall(False)
                back_off(seconds)

            monkeypatch.setattr(retry, "sleep", bmc_back_after_the_first_try)
            with world.db.session() as s:
                instances.delete_instance(s, "web")
            assert wait_state(world, "web", ("deleted", "error")).state == "deleted"
        assert "node n1: power off failed (try 1)" in caplog.text
        service = world.settings.service_vlan
        _, power, running = next(sample for sample in samples if sample[0] == service)
        assert (power, running) == (PowerState.OFF, "off"), samples


def test_a_failed_terminate_leaves_its_node_in_error_not_deploying(tmp_path: Path) -> None:
    """A spawn deleted while the node boots, whose terminate then fails (its BMC stops
    answering): the instance and its node are both in error, the node's reason naming
    the step (it stayed `deploying`, looking busy forever); once the BMC answers again,
    deleting the instance again erases and releases the node."""
    with world_with(tmp_path, nodes=1, bmc_timeout=0.5) as world:
        node = world.node("n1")

        def delete_and_stall_the_bmc(job, step):
            if job.state == SPAWN.state and step == Step.DEPLOY:
                node.bmc.stall()
                with world.db.session() as s:
                    instances.delete_instance(s, "web")

        with Controller(world.db, on_start=delete_and_stall_the_bmc):
            spawn(world, "web", "n1")
            inst = wait_state(world, "web", ("deleted", "error"))
            assert inst.state == "error" and "could not power off" in inst.error
            with world.db.session() as s:
                db_node = s.scalar(select(Node).where(Node.name == "n1"))
                assert db_node.state == "error", db_node.state
                assert "step port_to_service failed" in db_node.state_reason
                assert node_state_violations(s) == []
                db_node.state = "deploying"  # what the failed terminate left before
                s.flush()
                assert node_state_violations(s) == [
                    "node n1 is deploying while instance web is error"
                ]
                s.rollback()
            node.bmc.stall(False)
            with world.db.session() as s:
                instances.delete_instance(s, "web")
            assert wait_state(world, "web", ("deleted", "error")).state == "deleted"
        assert world.lab.disk_is_zero(node)
        with world.db.session() as s:
            db_node = s.scalar(select(Node).where(Node.name == "n1"))
            assert (db_node.state, db_node.state_reason) == ("available", None)
