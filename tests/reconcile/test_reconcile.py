"""Reconciliation against the Junos simulator: drift found, reported, fixed."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from metalnet.config import load_settings
from metalnet.db.engine import Database
from metalnet.db.models import Instance, Node
from metalnet.sim.switch.device import SimSwitch


@pytest.fixture
def sw():
    with SimSwitch.running("tor1", ports=8, username="netconf", password="pw") as switch:
        yield switch


@pytest.fixture
def run(cli, sqlite_url, sw, tmp_path):
    config = tmp_path / "metalnet.toml"
    config.write_text('image_allow = ["127.0.0.1"]\n')

    def invoke(*args: str):
        return cli("--config", str(config), "--db", sqlite_url, *args)

    assert invoke("db", "upgrade").exit_code == 0
    assert (
        invoke(
            "switch",
            "add",
            "tor1",
            "--driver",
            "junos",
            "--address",
            f"{sw.host}:{sw.port}",
            "--username",
            "netconf",
            "--password",
            "pw",
        ).exit_code
        == 0
    )
    for i in (1, 2, 3):
        assert (
            invoke(
                "node",
                "add",
                f"n{i}",
                "--mac",
                f"52:54:00:00:00:0{i}",
                "--switch",
                "tor1",
                "--port",
                f"ge-0/0/{i}",
                "--bmc",
                f"ipmi://127.0.0.1:62{i}",
                "--skip-initial-erase",
            ).exit_code
            == 0
        )
    return invoke


def drift_of(result) -> dict[str, tuple[int | None, int | None]]:
    reports = json.loads(result.stdout)
    return {d["interface"]: (d["expected_vlan"], d["actual_vlan"]) for d in reports[0]["drift"]}


def test_dry_run_reports_then_fix_corrects_in_one_commit(run, sw) -> None:
    dry = run("reconcile", "--dry-run", "--json")
    assert dry.exit_code == 1
    assert drift_of(dry) == {f"ge-0/0/{i}": (10, 1) for i in (1, 2, 3)}  # factory VLAN default
    assert all(sw.port_vlans()[f"ge-0/0/{i}"] == 1 for i in (1, 2, 3))  # dry run changed nothing
    before = sw.commit_count()
    fixed = run("reconcile", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert all(d["fixed"] for d in json.loads(fixed.stdout)[0]["drift"])
    assert all(sw.port_vlans()[f"ge-0/0/{i}"] == 10 for i in (1, 2, 3))
    assert sw.commit_count() - before == 2  # one transaction (confirmed + confirm)
    assert run("reconcile", "--dry-run", "--json").exit_code == 0


def test_hand_made_change_is_detected_and_undone(run, sw) -> None:
    assert run("reconcile").exit_code == 0
    sw.set_port_vlan_out_of_band("ge-0/0/2", 555)
    dry = run("reconcile", "--dry-run", "--json")
    assert drift_of(dry) == {"ge-0/0/2": (10, 555)}
    assert run("reconcile").exit_code == 0
    assert sw.port_vlans()["ge-0/0/2"] == 10


def test_unbound_port_is_parked(run, sw) -> None:
    assert run("reconcile").exit_code == 0
    assert run("node", "delete", "n3").exit_code == 0
    assert run("reconcile").exit_code == 0
    assert sw.port_vlans()["ge-0/0/3"] == 4000


def test_port_of_a_node_in_a_lifecycle_step_is_left_alone(run, sw, sqlite_url) -> None:
    assert run("project", "create", "acme").exit_code == 0
    assert run("network", "create", "web", "-p", "acme", "--cidr", "10.0.0.0/24").exit_code == 0
    created = run(
        "instance",
        "create",
        "i1",
        "-p",
        "acme",
        "--network",
        "web",
        "--node",
        "n1",
        "--image",
        "http://127.0.0.1/i.img",
        "--sha256",
        "a" * 64,
    )
    assert created.exit_code == 0, created.output
    dry = run("reconcile", "--dry-run", "--json")
    assert "ge-0/0/1" not in drift_of(dry)  # building: the lifecycle owns this port
    assert set(drift_of(dry)) == {"ge-0/0/2", "ge-0/0/3"}
    db = Database(load_settings(None, sqlite_url))
    with db.session() as s:
        node = s.scalar(select(Node).where(Node.name == "n1"))
        assert s.scalar(select(Instance.state).where(Instance.node_id == node.id)) == "building"


def test_unreachable_switch_is_reported_not_fatal(run, sw) -> None:
    sw.faults.refuse_login = True
    result = run("reconcile", "--json")
    assert result.exit_code == 1
    assert "tor1" in json.loads(result.stdout)[0]["error"]


def test_metrics_count_commits_and_drift(run, sw) -> None:
    from prometheus_client import generate_latest

    from metalnet.metrics import REGISTRY

    assert run("reconcile", "--dry-run").exit_code == 1
    text = generate_latest(REGISTRY).decode()
    assert 'metalnet_drift_ports{switch="tor1"} 3.0' in text
    assert run("reconcile").exit_code == 0
    text = generate_latest(REGISTRY).decode()
    assert 'metalnet_switch_commits_total{result="ok",switch="tor1"}' in text
    assert "metalnet_switch_queue_depth 0.0" in text


def test_serve_reconciles_periodically(run, sw, sqlite_url) -> None:
    """The controller's background reconciler puts a hand-changed port back by itself."""
    import dataclasses
    import time

    from metalnet.reconcile import PeriodicReconciler
    from metalnet.switching import Switching

    assert run("reconcile").exit_code == 0
    settings = dataclasses.replace(load_settings(None, sqlite_url), reconcile_interval=0.3)
    db = Database(settings)
    switching = Switching(db)
    reconciler = PeriodicReconciler(db, switching).start()
    try:
        sw.set_port_vlan_out_of_band("ge-0/0/3", 777)
        deadline = time.monotonic() + 20
        while sw.port_vlans()["ge-0/0/3"] != 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sw.port_vlans()["ge-0/0/3"] == 10
    finally:
        reconciler.stop()
        switching.close()
