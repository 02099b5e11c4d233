"""Enrolment and quarantine through the CLI, against the lab and a running controller.

Rule: a node is erased (and the erase verified) before it is first offered, unless the
admin says `--skip-initial-erase` (audited). Rule: quarantine is remembered by MAC and
BMC and survives deleting and adding the node again.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from metalnet.controller import Controller
from metalnet.db.models import AuditEntry, Node
from metalnet.power import PowerState
from metalnet.sim.lab.lab import BMC_PASSWORD, BMC_USER

SHA = "a" * 64


@pytest.fixture
def run(cli, world, tmp_path):
    config = tmp_path / "cli.toml"
    config.write_text(f'image_server = "{world.settings.image_server}"\n')

    def invoke(*args: str):
        return cli("--config", str(config), "--db", world.settings.database_url, *args)

    return invoke


def enrol(run, world, name: str, *extra: str):
    node = world.node("n1")
    return run(
        "node",
        "add",
        name,
        "--mac",
        node.mac,
        "--switch",
        node.switch.name,
        "--port",
        node.interface,
        "--bmc",
        node.bmc.url,
        "--bmc-username",
        BMC_USER,
        "--bmc-password",
        BMC_PASSWORD,
        *extra,
    )


def node_state(world, name: str, until: tuple[str, ...] = (), timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        with world.db.session() as s:
            state = s.scalar(select(Node.state).where(Node.name == name))
        if not until or state in until or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def spawn_on(run, world, node: str):
    return run(
        "instance",
        "create",
        "web",
        "-p",
        "alpha",
        "--network",
        "net",
        "--node",
        node,
        "--image",
        "http://127.0.0.1/i.img",
        "--sha256",
        SHA,
    )


def test_a_new_node_is_erased_and_verified_before_it_is_offered(run, world) -> None:
    node = world.node("n1")
    assert run("node", "delete", "n1").exit_code == 0
    added = enrol(run, world, "fresh")
    assert added.exit_code == 0, added.output
    assert node_state(world, "fresh") == "cleaning"
    refused = spawn_on(run, world, "fresh")
    assert refused.exit_code == 2 and "node 'fresh' is cleaning" in refused.stderr
    with Controller(world.db):
        assert node_state(world, "fresh", ("available", "quarantined")) == "available"
    assert world.lab.disk_is_zero(node)
    assert node.power.state == PowerState.OFF
    assert node.port_vlan() == world.settings.service_vlan
    assert any(boot.endswith(":ramdisk") for boot in node.boots)


def test_skip_initial_erase_offers_at_once_and_is_audited(run, world) -> None:
    node = world.node("n1")
    before = node.disk.read_bytes()
    assert run("node", "delete", "n1").exit_code == 0
    assert enrol(run, world, "vouched", "--skip-initial-erase").exit_code == 0
    assert node_state(world, "vouched") == "available"
    assert node.disk.read_bytes() == before
    with world.db.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "node add")).all()[-1]
        assert (entry.target, entry.ok) == ("vouched (--skip-initial-erase)", True)


def test_quarantine_survives_delete_and_add_under_another_name(run, world) -> None:
    node = world.node("n1")
    assert run("node", "delete", "n1").exit_code == 0
    dead = node.disk.with_suffix(".dead")
    node.disk.rename(dead)  # the disk cannot be erased: the initial erase fails
    with Controller(world.db):
        assert enrol(run, world, "n1").exit_code == 0
        assert node_state(world, "n1", ("available", "quarantined")) == "quarantined"
    assert node.power.state == PowerState.OFF
    dead.rename(node.disk)

    assert run("node", "delete", "n1").exit_code == 0
    assert enrol(run, world, "renamed", "--skip-initial-erase").exit_code == 0
    assert node_state(world, "renamed") == "quarantined"
    with world.db.session() as s:
        reason = s.scalar(select(Node.state_reason).where(Node.name == "renamed"))
        assert "erase" in reason
    refused = spawn_on(run, world, "renamed")
    assert refused.exit_code == 2 and "quarantined" in refused.stderr

    assert run("node", "clear", "renamed").exit_code == 0
    assert node_state(world, "renamed") == "cleaning"  # erased again before it is offered
    assert run("node", "delete", "renamed").exit_code == 0
    assert enrol(run, world, "again", "--skip-initial-erase").exit_code == 0
    assert node_state(world, "again") == "available"  # the clear forgot the quarantine
