"""The isolation guard: one rule for every port change, from every entry point.

The model test relates the guard to the isolation invariant (`lifecycle/invariants`)
and to the lifecycle's own plans over a real database; the CLI tests drive
`switch port-set` and `switch apply` against the Junos simulator over SSH.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet import inventory
from metalnet.config import Settings, load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.db.models import Instance, Node, SwitchPort
from metalnet.lifecycle.invariants import port_violation
from metalnet.lifecycle.states import SPAWN, TERMINATE
from metalnet.sim.switch.device import SimSwitch
from metalnet.switches import guard

SERVICE, PARKING, STRAY = 10, 4000, 999

# Every situation a node's port can be in: idle, or held by an instance of project
# alpha in one of its lifecycle states at one of its steps.
SITUATIONS = [
    None,
    ("building", "queued"),
    *(("building", step) for step in SPAWN.steps),
    ("active", "active"),
    *(("deleting", step) for step in TERMINATE.steps),
    *(("error", step) for step in SPAWN.steps),
]
# What each step's own move is (the lifecycle's moves must pass by construction).
LIFECYCLE_MOVES = {
    ("building", "port_to_service"): "service",
    ("building", "port_to_project"): "alpha",
    ("deleting", "port_to_service"): "service",
    ("error", "port_to_project"): "service",  # the undo of a failed port_to_project
}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Database, dict[str, int]]]:
    """A fake switch with node n1 on eth1, an unbound eth2, projects alpha and beta."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('guard') / 'guard.db'}"
    else:  # the row locks the guard takes are PostgreSQL's
        url = request.getfixturevalue("pg_cluster").new_database()
    config: Settings = load_settings(None, url)
    db = Database(config)
    upgrade(db.engine)
    with db.session() as s:
        inventory.add_switch(s, "sw", "fake", "127.0.0.1:9", "u", "p")
        inventory.add_node(s, config, "n1", "52:54:00:00:00:01", "sw", "eth1", "ipmi://h:623")
        s.add(SwitchPort(switch=inventory.get_switch(s, "sw"), interface="eth2"))
        vlans = {"service": SERVICE, "parking": PARKING, "stray": STRAY}
        for project, cidr in (("alpha", "10.1.0.0/24"), ("beta", "10.2.0.0/24")):
            inventory.create_project(s, project)
            vlans[project] = inventory.create_network(s, config, project, "net", cidr).vlan
    yield db, vlans
    db.engine.dispose()


def _situate(s: Session, situation: tuple[str, str] | None) -> SwitchPort:
    """Put n1 in `situation` (inside the caller's transaction) and return its port."""
    node = s.scalar(select(Node).where(Node.name == "n1"))
    if situation is not None:
        net = inventory.get_network(s, "alpha", "net")
        state, step = situation
        s.add(
            Instance(
                name="i1",
                project_id=net.project_id,
                network_id=net.id,
                node_id=node.id,
                holds_node_id=node.id,
                image_url="http://img.example/i.img",
                sha256="a" * 64,
                state=state,
                step=step,
            )
        )
        s.flush()
    return inventory.node_port(node)


def _expected(situation: tuple[str, str] | None) -> set[str]:
    """The rule as DESIGN.md states it, per situation (the model the guard must match)."""
    if situation is None:
        return {"service"}
    state, step = situation
    if state == "active":
        return {"alpha"}
    if state == "building" and step in ("port_to_project", "power_on"):
        return {"service", "alpha"}  # the move into the project, and the boot after it
    return {"service"}


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    situation=st.sampled_from(SITUATIONS),
    target=st.sampled_from(["service", "parking", "alpha", "beta", "stray"]),
)
def test_guard_admits_exactly_the_rule_and_never_a_violation(world, situation, target) -> None:
    db, vlans = world
    with Session(db.engine) as s:  # never committed: each example starts clean
        port = _situate(s, situation)
        refusal = guard.check(s, db.settings, port, vlans[target])
        assert (refusal is None) == (target in _expected(situation)), refusal
        if refusal is None:
            assert port_violation(s, "n1", vlans[target]) is None
        else:
            assert "port eth1" in str(refusal) and "node n1" in str(refusal)
        if situation in LIFECYCLE_MOVES:
            assert guard.check(s, db.settings, port, vlans[LIFECYCLE_MOVES[situation]]) is None


@given(target=st.integers(1, 4094))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_an_unbound_port_is_only_ever_parked(world, target: int) -> None:
    db, _vlans = world
    with Session(db.engine) as s:
        port = s.scalar(select(SwitchPort).where(SwitchPort.interface == "eth2"))
        refusal = guard.check(s, db.settings, port, target)
        assert (refusal is None) == (target == PARKING)
        if refusal is not None:
            assert "no node bound" in str(refusal)


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def sw() -> Iterator[SimSwitch]:
    with SimSwitch.running("tor1", ports=8, username="netconf", password="pw") as switch:
        yield switch


@pytest.fixture
def run(cli, sqlite_url, sw, tmp_path):
    """tor1 with n1 (ge-0/0/1) and n2 (ge-0/0/2); project alpha's instance i1 active on n1."""
    config = tmp_path / "metalnet.toml"
    config.write_text('image_allow = ["img.example"]\n')

    def invoke(*args: str, input: str | None = None):
        return cli("--config", str(config), "--db", sqlite_url, *args, input=input)

    address = f"{sw.host}:{sw.port}"
    steps = [
        ("db", "upgrade"),
        (
            "switch",
            "add",
            "tor1",
            "--address",
            address,
            "--username",
            "netconf",
            "--password",
            "pw",
        ),
        ("project", "create", "alpha"),
        ("project", "create", "beta"),
        ("network", "create", "net", "-p", "alpha", "--cidr", "10.1.0.0/24"),
        ("network", "create", "net", "-p", "beta", "--cidr", "10.2.0.0/24"),
    ]
    for i in (1, 2):
        mac, port = f"52:54:00:00:00:0{i}", f"ge-0/0/{i}"
        steps.append(
            ("node", "add", f"n{i}", "--mac", mac, "--switch", "tor1", "--port", port,
             "--bmc", f"ipmi://127.0.0.1:62{i}", "--skip-initial-erase")
        )  # fmt: skip
    steps.append(
        ("instance", "create", "i1", "-p", "alpha", "--network", "net", "--node", "n1",
         "--image", "http://img.example/i.img", "--sha256", "a" * 64)
    )  # fmt: skip
    for args in steps:
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
    db = Database(load_settings(None, sqlite_url))
    with db.session() as s:
        inst = s.scalar(select(Instance).where(Instance.name == "i1"))
        inst.state, inst.step = "active", "active"
    db.engine.dispose()
    assert invoke("switch", "port-set", "tor1", "ge-0/0/1", "--vlan", "100").exit_code == 0
    return invoke


def desired(run) -> dict[str, int]:
    view = json.loads(run("switch", "show", "tor1", "--json").stdout)
    return {p["interface"]: p["desired_vlan"] for p in view["ports"]}


@pytest.mark.parametrize(
    ("interface", "vlan", "owner", "rule"),
    [
        ("ge-0/0/1", "101", "node n1, instance i1 of project alpha, active", "project VLAN 100"),
        ("ge-0/0/1", "10", "node n1, instance i1 of project alpha, active", "project VLAN 100"),
        ("ge-0/0/2", "100", "node n2, no instance", "service VLAN 10"),
        ("ge-0/0/3", "101", "no node bound", "parked (VLAN 4000)"),
        ("ge-0/0/3", "10", "no node bound", "parked (VLAN 4000)"),
    ],
)
def test_port_set_that_breaks_isolation_is_refused_and_changes_nothing(
    run, sw, interface, vlan, owner, rule
) -> None:
    before, commits, log = desired(run), sw.commit_count(), run("switch", "log", "--json").stdout
    result = run("switch", "port-set", "tor1", interface, "--vlan", vlan)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert f"port {interface} ({owner}) may not go to VLAN {vlan}" in line
    assert rule in line and "--force --reason" in line
    assert desired(run) == before
    assert sw.commit_count() == commits
    assert run("switch", "log", "--json").stdout == log


def test_apply_with_one_violating_change_applies_none(run, sw, tmp_path) -> None:
    changes = [
        {"switch": "tor1", "port": "ge-0/0/4", "vlan": 4000},  # fine on its own
        {"switch": "tor1", "port": "ge-0/0/1", "vlan": 101},  # alpha's node into beta
    ]
    path = tmp_path / "changes.json"
    path.write_text(json.dumps(changes))
    before, commits = desired(run), sw.commit_count()
    result = run("switch", "apply", str(path))
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "port ge-0/0/1 (node n1, instance i1 of project alpha, active)" in line
    assert desired(run) == before and sw.commit_count() == commits


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--force",), "--force needs --reason"),
        (("--reason", "x"), "--reason is only used with --force"),
        (("--force", "--reason", "  "), "--reason must say why"),
    ],
)
def test_force_and_reason_go_together(run, sw, flags, message) -> None:
    commits = sw.commit_count()
    result = run("switch", "port-set", "tor1", "ge-0/0/2", "--vlan", "100", *flags)
    assert result.exit_code == 2 and message in result.stderr
    assert sw.commit_count() == commits


def test_forced_change_is_made_and_audited_with_its_reason(run, sw) -> None:
    reason = "moving n2 to alpha by hand for a cabling test"
    result = run(
        "switch", "port-set", "tor1", "ge-0/0/2", "--vlan", "100", "--force", "--reason", reason
    )
    assert result.exit_code == 0, result.output
    assert sw.port_vlans()["ge-0/0/2"] == 100 and desired(run)["ge-0/0/2"] == 100
    entries = json.loads(run("audit", "--json").stdout)
    [override] = [e for e in entries if e["action"] == "port override"]
    assert override["target"] == "tor1 ge-0/0/2 vlan 100"
    assert reason in override["detail"] and "node n2, no instance" in override["detail"]


@pytest.mark.parametrize("situation", [s for s in SITUATIONS if "service" in _expected(s)])
def test_an_admin_move_to_service_never_enables_a_running_tenant_os(world, situation) -> None:
    """`switch port-set` sets a VLAN only: while the node may run its tenant's OS (its
    instance moves into the project, or leaves it before the terminate's power-off),
    a move to the service VLAN records the port disabled; the lifecycle enables it
    once the node is off. Otherwise the port keeps its desired enabled state."""
    from metalnet.switches.service import SwitchService

    db, _vlans = world
    with db.session() as s:
        _situate(s, situation)
    service = SwitchService(db)
    try:
        service.submit_ports([("sw", "eth1", SERVICE)])
        with db.session() as s:
            port = inventory.node_port(s.scalar(select(Node).where(Node.name == "n1")))
            enabled = port.desired_enabled
            running = guard.may_run_tenant(guard.port_owner(s, port))
            for instance in s.scalars(select(Instance)):
                s.delete(instance)
            port.desired_enabled = True
    finally:
        service.close()
    state_step = situation or ("", "")
    assert running == (
        (state_step[0] == "building" and state_step[1] in ("port_to_project", "power_on"))
        or state_step == ("deleting", "port_to_service")
    )
    assert enabled is not running
