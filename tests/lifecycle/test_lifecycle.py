"""Spawn and terminate over the simulators: real SSH/NETCONF, Redfish, agent processes."""

from __future__ import annotations

import time

import httpx
import pytest
from labworld import world_with
from sqlalchemy import select

from metalnet.controller import Controller
from metalnet.db.models import AgentTask, Instance, Node
from metalnet.errors import Conflict
from metalnet.lifecycle import instances, tokens
from metalnet.lifecycle.states import SPAWN, TERMINATE, Step
from metalnet.power import PowerState

BAD_SHA = "0" * 64


def wait_state(world, name: str, final: tuple[str, ...], timeout: float = 60) -> Instance:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with world.db.session() as s:
            inst = instances.get_instance(s, name)
            if inst.state in final:
                s.expunge(inst)
                return inst
        time.sleep(0.1)
    raise AssertionError(f"{name} did not reach {final}")


def spawn(world, name: str, node: str, project: str = "alpha", sha: str | None = None) -> None:
    with world.db.session() as s:
        instances.create_instance(
            s,
            name,
            project,
            "net",
            node,
            world.lab.image_url,
            sha or world.lab.image_sha256,
            settings=world.settings,
        )


def steps_seen(world, name: str) -> list[str]:
    with world.db.session() as s:
        inst = instances.get_instance(s, name)
        return [e.step for e in inst.events if e.message == "done"]


def test_spawn_and_terminate_move_the_port_at_the_right_moments(world) -> None:
    """The switch's own committed state, sampled at every step, follows the design."""
    observed: list[tuple[str, str, int | None]] = []
    node = world.node("n1")

    def after(job, step):
        observed.append((job.state, step, node.port_vlan()))

    with Controller(world.db, on_step=after):
        spawn(world, "web", "n1")
        assert wait_state(world, "web", ("active", "error")).state == "active"
        assert node.port_vlan() == world.vlans["alpha"]
        assert node.running == "tenant image"
        with world.db.session() as s:
            instances.delete_instance(s, "web")
        assert wait_state(world, "web", ("deleted", "error")).state == "deleted"
    service, alpha = world.settings.service_vlan, world.vlans["alpha"]
    in_project = SPAWN.steps.index(Step.PORT_TO_PROJECT)
    expected = [("building", s, service) for s in SPAWN.steps[:in_project]]
    expected += [("building", s, alpha) for s in SPAWN.steps[in_project:]]
    expected += [("deleting", s, service) for s in TERMINATE.steps]
    assert observed == expected
    assert world.lab.disk_is_zero(node)
    assert node.power.state == PowerState.OFF
    with world.db.session() as s:
        db_node = s.scalar(select(Node).where(Node.name == "n1"))
        assert db_node.state == "available"
        assert db_node.agent_token_hash is None  # the token died with the task
    assert steps_seen(world, "web") == list(SPAWN.steps) + list(TERMINATE.steps)


def test_wrong_checksum_fails_deploy_and_keeps_the_port_out_of_the_project(world) -> None:
    with Controller(world.db):
        spawn(world, "bad", "n1", sha=BAD_SHA)
        inst = wait_state(world, "bad", ("active", "error"))
    assert inst.state == "error"
    assert "step deploy failed" in inst.error and "checksum mismatch" in inst.error
    assert world.lab.image_sha256 not in inst.error  # never what was read
    assert world.node("n1").port_vlan() == world.settings.service_vlan


def test_erase_that_cannot_be_done_quarantines_the_node(world) -> None:
    """The disk dies before the erase: the node is quarantined, never handed out again."""
    node = world.node("n1")
    with Controller(world.db):
        spawn(world, "web", "n1")
        assert wait_state(world, "web", ("active", "error")).state == "active"
        node.disk.rename(node.disk.with_suffix(".dead"))  # the disk is pulled
        with world.db.session() as s:
            instances.delete_instance(s, "web")
        inst = wait_state(world, "web", ("deleted", "error"))
    assert "quarantined" in (inst.error or "")
    assert node.port_vlan() == world.settings.service_vlan
    assert node.power.state == PowerState.OFF
    with world.db.session() as s:
        db_node = s.scalar(select(Node).where(Node.name == "n1"))
        assert db_node.state == "quarantined" and "erase failed" in db_node.state_reason
    with pytest.raises(Conflict, match="quarantined"), world.db.session() as s:
        instances.create_instance(
            s, "again", "alpha", "net", "n1", world.lab.image_url, "a" * 64, settings=world.settings
        )
    with world.db.session() as s:
        another = instances.create_instance(
            s, "other", "alpha", "net", None, world.lab.image_url, "a" * 64, settings=world.settings
        )
        assert another.node.name == "n2"  # --any skips the quarantined node
    with world.db.session() as s:
        instances.clear_node(s, "n1")
        assert s.scalar(select(Node.state).where(Node.name == "n1")) == "cleaning"


def test_bmc_that_never_answers_is_an_error_naming_node_and_bmc(tmp_path) -> None:
    with world_with(tmp_path, bmc_timeout=1.0) as world:
        world.node("n1").bmc.stall()
        started = time.monotonic()
        with Controller(world.db):
            spawn(world, "web", "n1")
            inst = wait_state(world, "web", ("active", "error"), timeout=30)
        assert time.monotonic() - started < 20
        assert inst.state == "error"
        assert "step pxe_boot failed" in inst.error
        assert "n1" in inst.error and world.node("n1").bmc.url in inst.error
        assert world.node("n1").port_vlan() == world.settings.service_vlan


def test_agent_token_opens_only_its_own_node(world) -> None:
    """Over real HTTP to the controller: n1's token cannot read or report n2's task."""
    with world.db.session() as s:
        n1, n2 = (s.scalar(select(Node).where(Node.name == n)) for n in ("n1", "n2"))
        t1, t2 = tokens.issue(n1), tokens.issue(n2)
    with Controller(world.db) as controller:
        base = f"http://{controller.host}:{controller.port}/agent/v1/nodes"
        own = httpx.get(f"{base}/n1/task", headers={"Authorization": f"Bearer {t1}"})
        other = httpx.get(f"{base}/n2/task", headers={"Authorization": f"Bearer {t1}"})
        forged = httpx.get(f"{base}/n2/task", headers={"Authorization": "Bearer nope"})
        report = httpx.post(
            f"{base}/n2/tasks/1/result",
            headers={"Authorization": f"Bearer {t1}"},
            json={"ok": True, "message": "", "bytes": 0, "sha256": None},
        )
    assert own.status_code == 204
    assert other.status_code == 403 and "belongs to node n1" in other.text
    assert forged.status_code == 401
    assert report.status_code == 403
    assert t2  # n2's own token exists and is different
    with world.db.session() as s:
        assert s.scalar(select(AgentTask)) is None
