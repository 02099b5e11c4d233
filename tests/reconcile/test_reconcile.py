"""Reconciliation against the Junos simulator: drift found, reported, fixed."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from metalnet.config import load_settings
from metalnet.db.engine import Database
from metalnet.db.models import Base, Instance, Node
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

    from metalnet.switches.reconcile import PeriodicReconciler
    from metalnet.switches.service import SwitchService

    assert run("reconcile").exit_code == 0
    settings = dataclasses.replace(load_settings(None, sqlite_url), reconcile_interval=0.3)
    db = Database(settings)
    service = SwitchService(db)
    reconciler = PeriodicReconciler(db, service).start()
    try:
        sw.set_port_vlan_out_of_band("ge-0/0/3", 777)
        deadline = time.monotonic() + 20
        while sw.port_vlans()["ge-0/0/3"] != 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sw.port_vlans()["ge-0/0/3"] == 10
    finally:
        reconciler.stop()
        service.close()


def table_contents(db: Database) -> dict[str, list[tuple]]:
    """Every row of every table, for comparing the database before and after."""
    with db.engine.connect() as conn:
        return {
            t.name: sorted(conn.execute(t.select()).all(), key=repr)
            for t in Base.metadata.sorted_tables
        }


def test_dry_run_changes_nothing_in_the_database(run, sw, sqlite_url) -> None:
    assert run("node", "delete", "n3").exit_code == 0  # ge-0/0/3: unbound, parked
    forced = ("--force", "--reason", "lab: leave it in 77 for a while")
    assert run("switch", "port-set", "tor1", "ge-0/0/5", "--vlan", "77", *forced).exit_code == 0
    sw.set_port_vlan_out_of_band("ge-0/0/2", 555)
    db = Database(load_settings(None, sqlite_url))
    before = table_contents(db)
    dry = run("reconcile", "--dry-run", "--json")
    assert dry.exit_code == 1
    assert drift_of(dry) == {
        "ge-0/0/1": (10, 1),
        "ge-0/0/2": (10, 555),
        "ge-0/0/3": (4000, 1),
        "ge-0/0/5": (4000, 77),  # unbound: parked, whatever was forced
    }
    assert table_contents(db) == before
    db.engine.dispose()


def test_a_terminate_between_read_and_fix_wins(run, sw, sqlite_url) -> None:
    """The reconciler read the port as an active tenant's; a terminate lands before its fix.

    The fix is compare-and-set against the desired state at fix time, so the port stays
    in the service VLAN where the terminate put it, and the desired state stays 10.
    """
    from metalnet.lifecycle import instances
    from metalnet.switches.reconcile import reconcile
    from metalnet.switches.service import SwitchService

    assert run("project", "create", "acme").exit_code == 0
    assert run("network", "create", "web", "-p", "acme", "--cidr", "10.0.0.0/24").exit_code == 0
    image = ("--image", "http://127.0.0.1/i.img", "--sha256", "a" * 64)
    created = run(
        "instance", "create", "i1", "-p", "acme", "--network", "web", "--node", "n1", *image
    )
    assert created.exit_code == 0, created.output
    db = Database(load_settings(None, sqlite_url))
    with db.session() as s:
        inst = s.scalar(select(Instance).where(Instance.name == "i1"))
        inst.state, inst.step = "active", "active"
        project_vlan = inst.network.vlan
    assert run("switch", "port-set", "tor1", "ge-0/0/1", "--vlan", str(project_vlan)).exit_code == 0
    sw.set_port_vlan_out_of_band("ge-0/0/1", 555)  # drift on the tenant's port

    class TerminateLandsAfterTheRead(SwitchService):
        def read_ports(self, switch_name, interfaces=None):
            actual = super().read_ports(switch_name, interfaces)
            with self.db.session() as s:
                instances.delete_instance(s, "i1")
            self.move_node("n1", 10)  # the terminate's first step, as the engine runs it
            return actual

    service = TerminateLandsAfterTheRead(db)
    try:
        [report] = reconcile(db, fix=True, service=service)
    finally:
        service.close()
    [drift] = [d for d in report.drift if d.interface == "ge-0/0/1"]
    assert drift.expected_vlan == project_vlan and drift.actual_vlan == 555
    assert not drift.fixed and "left to the lifecycle" in drift.error
    assert sw.port_vlans()["ge-0/0/1"] == 10
    assert desired_of(run)["ge-0/0/1"] == 10
    db.engine.dispose()


def desired_of(run) -> dict[str, int | None]:
    view = json.loads(run("switch", "show", "tor1", "--json").stdout)
    return {p["interface"]: p["desired_vlan"] for p in view["ports"]}


def _by_hand(sw: SimSwitch, statement: str) -> None:
    """Commit `statement` over a real NETCONF session (ncclient), as an operator would."""
    from ncclient import manager

    with manager.connect(
        host=sw.host,
        port=sw.port,
        username=sw.username,
        password=sw.password,
        device_params={"name": "junos"},
        hostkey_verify=False,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    ) as nc:
        nc.lock()
        nc.load_configuration(format="text", config=statement)
        nc.commit()
        nc.unlock()


def _enabled(sw: SimSwitch, interface: str) -> bool:
    from metalnet.switches.junos import JunosDriver

    with JunosDriver(sw.target("tor1")) as driver:
        return driver.read_ports([interface])[interface].enabled


def test_parked_ports_are_disabled_when_configured(run, sw, tmp_path) -> None:
    """`park_disabled`: an unbound port rests in the parking VLAN *and* disabled; a port
    bound again to a node is enabled in the service VLAN."""
    config = tmp_path / "metalnet.toml"
    config.write_text(config.read_text() + "park_disabled = true\n")
    assert run("reconcile").exit_code == 0
    assert run("node", "delete", "n3").exit_code == 0
    assert run("reconcile").exit_code == 0
    assert sw.port_vlans()["ge-0/0/3"] is None and not _enabled(sw, "ge-0/0/3")
    ports = {r["interface"]: r for r in json.loads(run("switch", "ports", "tor1", "--json").stdout)}
    assert ports["ge-0/0/3"]["desired"] == "VLAN 4000 disabled" and ports["ge-0/0/3"]["in_sync"]
    assert run("switch", "check", "tor1").exit_code == 0
    added = run(
        "node",
        "add",
        "n3",
        "--mac",
        "52:54:00:00:00:03",
        "--switch",
        "tor1",
        "--port",
        "ge-0/0/3",
        "--bmc",
        "ipmi://127.0.0.1:623",
        "--skip-initial-erase",
    )
    assert added.exit_code == 0, added.output
    assert run("reconcile").exit_code == 0
    assert sw.port_vlans()["ge-0/0/3"] == 10 and _enabled(sw, "ge-0/0/3")


def test_a_port_disabled_by_hand_is_enabled_again(run, sw) -> None:
    """Nothing else ever removes a `disable` statement: without the enabled part of the
    drift rule, such a port would drift for ever, cut off, while reading as in VLAN 10."""
    assert run("reconcile").exit_code == 0
    _by_hand(sw, "interfaces { ge-0/0/2 { disable; } }")
    assert sw.port_vlans()["ge-0/0/2"] is None  # cut off from the data plane
    dry = json.loads(run("reconcile", "--dry-run", "--json").stdout)
    [drift] = dry[0]["drift"]
    assert drift["interface"] == "ge-0/0/2" and drift["device"] == "access VLAN 10 disabled"
    assert drift["expected_enabled"] is True
    ports = {r["interface"]: r for r in json.loads(run("switch", "ports", "tor1", "--json").stdout)}
    assert ports["ge-0/0/2"]["in_sync"] is False and ports["ge-0/0/2"]["desired"] == "VLAN 10"
    assert run("reconcile").exit_code == 0
    assert sw.port_vlans()["ge-0/0/2"] == 10 and _enabled(sw, "ge-0/0/2")
    assert run("switch", "check", "tor1").exit_code == 0


def test_a_port_wanted_disabled_is_disabled_again(run, sw, sqlite_url) -> None:
    """The other way round: the database wants the port disabled (its node may run a
    tenant's OS), someone enables it by hand; the reconciler disables it again, and
    `switch check` shows the wish."""
    from metalnet.switches.service import SwitchService

    assert run("reconcile").exit_code == 0
    db = Database(load_settings(None, sqlite_url))
    service = SwitchService(db)
    try:
        assert service.move_node("n3", 10, enabled=False).ok
    finally:
        service.close()
    assert sw.port_vlans()["ge-0/0/3"] is None and not _enabled(sw, "ge-0/0/3")
    [logged] = json.loads(run("switch", "log", "tor1", "--limit", "1", "--json").stdout)
    assert logged["ports"] == [{"interface": "ge-0/0/3", "vlan": 10, "enabled": False}]
    _by_hand(sw, "interfaces { ge-0/0/3 { delete: disable; } }")
    check = run("switch", "check", "tor1")
    assert check.exit_code == 1
    assert "drift: ge-0/0/3 wanted VLAN 10 disabled, device has access VLAN 10" in check.stdout
    assert run("reconcile").exit_code == 0
    assert sw.port_vlans()["ge-0/0/3"] is None and not _enabled(sw, "ge-0/0/3")
    assert run("switch", "check", "tor1").exit_code == 0
    db.engine.dispose()
