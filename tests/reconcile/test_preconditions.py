"""Model test: a reconciler's correction held between its check and the device commit
never overwrites a newer desired state.

Two `serve` workers share the database (on SQLite, where one worker is the rule, the
reconciler and the writer share one worker). Worker A reconciles a switch whose ports
all drifted; its lane is held right before it builds the device configuration (the
gate below, in front of the switch's guard), after the corrections passed their
compare-and-set. Meanwhile worker B terminates instances, attaches and detaches ports
(owner changes), waiting for the device or not; then A's lane goes on, and B may keep
writing. In the end every port on the switch is in the VLAN the database last wanted,
whatever the interleaving: each queued change carries the desired state it was
computed from, and the lane re-checks it against the database right before the commit.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalnet import inventory
from metalnet.config import VlanRange, load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.lifecycle import instances
from metalnet.sim.switch.fleet import SimFleet
from metalnet.switches.reconcile import reconcile
from metalnet.switches.service import Desired, SwitchService

NODE_PORTS = ("ge-0/0/1", "ge-0/0/2")  # bound to nodes held by active instances
FREE_PORTS = ("ge-0/0/3", "ge-0/0/4")  # unbound: parked, or attached by an outside owner
OWNER = "neutron:model"
OUTSIDE_VLANS = (2001, 2002)  # outside metalnet's project range below

Op = tuple[str, str, int]
ops = st.one_of(
    st.tuples(st.just("terminate"), st.sampled_from(NODE_PORTS), st.just(0)),
    st.tuples(st.just("attach"), st.sampled_from(FREE_PORTS), st.sampled_from(OUTSIDE_VLANS)),
    st.tuples(st.just("detach"), st.sampled_from(FREE_PORTS), st.just(0)),
)


class Gate:
    """Holds a worker's lane in front of the switch's guard until opened."""

    def __init__(self, guard) -> None:
        self.guard = guard
        self.reached = threading.Event()
        self.opened = threading.Event()

    @contextmanager
    def __call__(self, switch: str) -> Iterator[None]:
        self.reached.set()
        assert self.opened.wait(60), "the test never opened the gate"
        with self.guard(switch):
            yield


class World:
    """One switch with two node ports (active tenants) and two free ports, in sync."""

    def __init__(self, db: Database, fleet: SimFleet, number: int) -> None:
        self.db = db
        self.name = f"tor{number}"
        self.device = fleet.add(self.name, ports=8, username="netconf", password="pw")
        self.instances = {port: f"i{number}x{i}" for i, port in enumerate(NODE_PORTS)}
        with db.session() as s:
            inventory.add_switch(
                s, self.name, "junos", f"{self.device.host}:{self.device.port}", "netconf", "pw"
            )
            project = f"p{number}"
            inventory.create_project(s, project)
            inventory.create_network(s, db.settings, project, "net", f"10.{number}.0.0/24")
            for i, port in enumerate(NODE_PORTS):
                node = f"n{number}x{i}"
                mac = f"52:54:00:{number:02x}:00:{i:02x}"
                inventory.add_node(
                    s, db.settings, node, mac, self.name, port,
                    f"ipmi://127.0.0.1:{10000 + 4 * number + i}", initial_erase=False,
                )  # fmt: skip
                inst = instances.create_instance(
                    s, self.instances[port], project, "net", node, "http://i/i.img", "a" * 64,
                    settings=db.settings,
                )  # fmt: skip
                inst.state, inst.step = "active", "active"
                s.flush()
                self.project_vlan = inst.network.vlan

    def settle(self, service: SwitchService) -> None:
        """Put every port where the database wants it, through the service."""
        parking = self.db.settings.parking_vlan
        moves = [(self.name, p, self.project_vlan) for p in NODE_PORTS]
        moves += [(self.name, p, parking) for p in FREE_PORTS]
        assert all(o.ok for o in service.set_ports(moves))

    def desired(self) -> dict[str, int | None]:
        """interface -> the VLAN the device should carry (None for a port wanted
        disabled: the terminate here is queued before its power-off, so disabled)."""
        with self.db.session() as s:
            switch = inventory.get_switch(s, self.name)
            wanted = {p.interface: Desired.of(p, self.db.settings) for p in switch.ports}
        return {i: d.vlan if d.enabled else None for i, d in wanted.items()}

    def apply(self, service: SwitchService, op: Op) -> list:
        """Worker B's step; returns the futures of the moves it queued."""
        kind, port, vlan = op
        if kind == "terminate":
            with self.db.session() as s:
                inst = instances.get_instance(s, self.instances[port])
                if inst.state != "active":
                    return []
                instances.delete_instance(s, inst.name)
            # the terminate's first move, queued through the admin's path before any
            # power-off: recorded disabled (`guard.may_run_tenant`)
            return service.submit_ports([(self.name, port, self.db.settings.service_vlan)])
        if kind == "attach":
            return [service.attach(self.name, port, vlan, OWNER)]
        if port not in self.attached():
            return []
        return [service.detach(self.name, port, OWNER)]

    def attached(self) -> set[str]:
        with self.db.session() as s:
            switch = inventory.get_switch(s, self.name)
            return {p.interface for p in switch.ports if p.attachment is not None}


@pytest.fixture
def model_db(database_url: str) -> Iterator[Database]:
    base = load_settings(None, database_url)
    db = Database(replace(base, project_vlan_range=VlanRange(100, 1999), image_allow=("i",)))
    upgrade(db.engine)
    yield db
    db.engine.dispose()


@pytest.fixture
def fleet() -> Iterator[SimFleet]:
    with SimFleet() as sims:
        yield sims


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    held=st.lists(ops, max_size=4),
    wait_while_held=st.booleans(),
    after=st.lists(ops, max_size=3),
)
def test_a_held_correction_never_overwrites_a_newer_desired_state(
    model_db: Database,
    fleet: SimFleet,
    held: list[Op],
    wait_while_held: bool,
    after: list[Op],
) -> None:
    world = World(model_db, fleet, next(_numbers))
    two_workers = model_db.engine.dialect.name == "postgresql"
    reconciler = SwitchService(model_db)
    writer = SwitchService(model_db) if two_workers else reconciler
    try:
        world.settle(writer)
        for port in NODE_PORTS + FREE_PORTS:
            world.device.set_port_vlan_out_of_band(port, 555)
        gate = Gate(reconciler.queue.guard)
        reconciler.queue.guard = gate
        reports: list = []
        worker_a = threading.Thread(
            target=lambda: reports.extend(reconcile(model_db, service=reconciler))
        )
        worker_a.start()
        assert gate.reached.wait(60), "the reconciler queued no correction"
        futures = list(itertools.chain.from_iterable(world.apply(writer, op) for op in held))
        if two_workers and wait_while_held:  # B's moves reach the device first
            assert all(f.result(60).ok for f in futures)
        gate.opened.set()
        futures += itertools.chain.from_iterable(world.apply(writer, op) for op in after)
        worker_a.join(120)
        assert not worker_a.is_alive(), "the reconciliation did not finish"
        outcomes = [f.result(60) for f in futures]
        assert all(o.ok for o in outcomes), [o.message for o in outcomes]
        desired = world.desired()
        actual = world.device.port_vlans()
        assert {p: actual[p] for p in desired} == desired
        [report] = [r for r in reports if r.switch == world.name]
        assert {d.interface for d in report.drift} == set(desired)
        assert not world.device.confirm_pending()
    finally:
        reconciler.close()
        if writer is not reconciler:
            writer.close()


_numbers = itertools.count(1)
