"""The fault campaign's scenarios: inject one fault with work in flight, settle, audit.

Each scenario is a function `(workdir, env) -> Outcome`, shared by the tests
(tests/faults/test_fault_campaign.py) and the benchmark (bench/faults.py), so the
table the benchmark prints is about exactly what the tests check. Every outcome says
whether the fault hit what it was aimed at (`Hit`), with the evidence: a fault that
missed its transaction proves nothing, however well the system recovered.

Switch faults run with a *batch* of port changes and a *terminate* lifecycle in flight,
coalesced into the one transaction the fault hits (a warm-up transaction, alone on the
switch before the terminate starts, keeps the switch's lane busy while both queue up;
the fault is armed from the switch's commit callback so it lands on that transaction).
Worker and database faults run spawns on `metalnet serve` processes over PostgreSQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lxml import etree
from ncclient import manager
from sqlalchemy import select

from metalnet.controller import Controller
from metalnet.db.models import Instance, SwitchChange
from metalnet.lifecycle import instances
from metalnet.sim.lab.controller import serve
from metalnet.sim.lab.failover import Failover
from metalnet.sim.lab.faults.audit import Findings, audit, now, settle
from metalnet.sim.lab.faults.rig import (
    Trigger,
    Watch,
    driver_lock_wait,
    instance_state,
    kill9,
    make_active,
    restart_postgres,
    shorten_confirm,
    stop_workers,
    utc,
    wait_final,
    wait_until,
    watch_world,
    write_worker_config,
)
from metalnet.sim.lab.postgres import PgCluster, find_pg_bin
from metalnet.sim.lab.world import World, free_port, world_with
from metalnet.switches.reconcile import Drift

SWITCH_SETTINGS = {"poll_interval": 0.2, "switch_timeout": 10.0}  # step_timeout: 30 s
CONFIRM_UNIT = 0.4  # a commit-confirmed "minute" lasts 0.4 s: 5 minutes = 2 s
WARMUP_PORT = "ge-0/0/7"
BATCH_UNBOUND = ("ge-0/0/4", "ge-0/0/5", "ge-0/0/6")
WARMUP_HOLD = 2.0  # s the warm-up's lock request stalls: the lane is busy meanwhile
LOCK_BUDGET, LOCK_HELD = 1.5, 4.0
SESSION_LOST = "session lost"  # the Junos driver's change-log message for a dropped session


@dataclass
class Env:
    """What scenarios need from outside: a shared PostgreSQL cluster (None: skip them)."""

    cluster: PgCluster | None = None


@dataclass(frozen=True)
class Hit:
    """Whether the fault landed where it was aimed, and the record that shows it."""

    ok: bool
    evidence: str


@dataclass
class Outcome:
    """One run of one fault: did it hit its target, did the system recover, how fast,
    and was anything lost."""

    fault: str
    hit: Hit
    recovered: bool
    seconds: float
    findings: Findings
    notes: list[str] = field(default_factory=list)

    def lost(self) -> dict[str, list[str]]:
        return self.findings.lost()


Scenario = Callable[[Path, Env], Outcome]


# ----------------------------------------------------------------------------- switch faults


@dataclass
class SwitchFault:
    """How one switch fault is aimed and what end of the terminate is acceptable.

    `arm(switch)` is called once the warm-up transaction is on the switch (1 commit:
    it is staged, and the lane goes on with the work piled up behind it before
    confirming), so it aims at the transaction that carries the batch and the terminate.
    The confirmation of both is the commit after that (`arm_after=2`).
    `journal` is a phrase of the change-log entry the fault leaves: the first failed
    transaction other than the warm-up must carry it, the terminate's port and the
    batch (see `_faulted_transaction`). `applied` is whether the switch applied that
    transaction before it failed (a drop after the commit, a lost confirmation) or not
    (a drop before it, a refusal, a held lock): the switch's commit history must agree.
    `error_ok` is a phrase an instance error may contain for the fault to count as
    handled (a clear error); None means the terminate must complete.
    """

    name: str
    arm: Callable[[object], None]
    journal: str
    applied: bool
    error_ok: str | None = None
    arm_after: int = 1


def _batch(world: World) -> list[tuple[str, str, int]]:
    """Bring the other nodes onto the service VLAN and park three unbound ports."""
    sw = world.lab.fleet.switches[0].name
    service, parking = world.settings.service_vlan, world.settings.parking_vlan
    moves = [(sw, n.interface, service) for n in world.lab.nodes[1:]]
    return moves + [(sw, port, parking) for port in BATCH_UNBOUND]


def run_switch_fault(
    workdir: Path,
    fault: SwitchFault,
    hold: Callable[[World], object] | None = None,
    target: Callable[[World, SwitchFault, list[Drift], Watch], Hit] | None = None,
) -> Outcome:
    """Terminate of n1 + a batch in flight in one transaction; the fault hits it.

    `target` judges whether it did (default: `_faulted_transaction`)."""
    with world_with(workdir, nodes=4, commit_latency=0.2, **SWITCH_SETTINGS) as world:
        switch = world.lab.fleet.switches[0]
        shorten_confirm(switch, CONFIRM_UNIT)
        watch = watch_world(world)
        with Controller(world.db) as controller:
            switching = controller.switching
            make_active(world, switching, "t1", "n1", "alpha")
            Trigger(switch, fault.arm_after, lambda: fault.arm(switch))
            switch.faults.stall_next("lock-configuration", WARMUP_HOLD)
            t0 = time.monotonic()
            warmup = switching.submit_ports(
                [(switch.name, WARMUP_PORT, world.settings.parking_vlan)]
            )
            # The warm-up is on the switch (its lock request took the stall) before the
            # terminate starts, so the terminate's move cannot coalesce with it.
            wait_until(lambda: switch.faults.stall_rpc is None, timeout=5)
            with world.db.session() as session:
                instances.delete_instance(session, "t1")
            wait_until(lambda: _step_started(world, "t1"), timeout=5)
            holder = hold(world) if hold else None
            outcomes = switching.set_ports(_batch(world))
            warmup[0].result(30)
            wait_final(world.db, ["t1"], timeout=60)
            if holder is not None:
                holder.join()
        drift, intents = settle(world.db, switch)
        seconds = time.monotonic() - t0
        findings = audit(world.db, switch, watch, drift, intents)
        state, _step, error = instance_state(world.db, "t1")
        hit = (target or _faulted_transaction)(world, fault, drift, watch)
        notes = [
            f"batch: {sum(o.ok for o in outcomes)}/{len(outcomes)} ok",
            f"terminate: {state}" + (f" ({error})" if error else ""),
        ]
    done = state == "deleted" or bool(fault.error_ok and error and fault.error_ok in error)
    recovered = done and not findings.unreported and not findings.stuck
    return Outcome(fault.name, hit, recovered, seconds, findings, notes)


def _step_started(world: World, name: str) -> bool:
    with world.db.session() as session:
        inst = instances.get_instance(session, name)
        return any(e.step == "port_to_service" and e.message == "started" for e in inst.events)


def _faulted_transaction(
    world: World, fault: SwitchFault, _drift: list[Drift], watch: Watch
) -> Hit:
    """The transaction the fault was aimed at is the one carrying the terminate's port
    and the batch: it must be the first failed one, failed with the fault's message,
    and applied on the switch before the failure exactly when the fault lets it
    (`SwitchFault.applied`, judged on the watch's history of committed configurations).

    The change log records a transaction when it ends (confirmed, refused, or rolled
    back), not when it is staged: the warm-up's row is written when it is confirmed
    together with a later transaction, or rolled back after a lost session, so its
    place in the log says nothing about order. Failures of the warm-up alone are left
    aside (a lock held from its stall, a roll-back after the aimed transaction's lost
    session); a fault spent on the warm-up or its confirmation leaves no later failure,
    so it is still a miss.
    """
    n1 = world.lab.nodes[0].interface
    aimed = {n1, *(port for _sw, port, _vlan in _batch(world))}
    with world.db.session() as session:
        rows = list(session.scalars(select(SwitchChange).order_by(SwitchChange.id)))
    failed = next(
        (r for r in rows if not r.ok and {p["interface"] for p in r.ports} != {WARMUP_PORT}),
        None,
    )
    if failed is None:
        return Hit(False, "no transaction but the warm-up failed: the fault hit nothing")
    ports = sorted(str(p["interface"]) for p in failed.ports)
    applied = _applied_before(world, watch, utc(failed.at))
    evidence = (
        f"failed transaction {failed.id} on {ports}: {failed.message}; "
        f"{'applied' if applied else 'not applied'} on the switch before that"
    )
    hit = aimed <= set(ports) and fault.journal in failed.message and applied == fault.applied
    return Hit(hit, evidence)


def _applied_before(world: World, watch: Watch, moment: datetime) -> bool:
    """Whether the switch's committed configuration held the terminate's move and the
    whole batch at some moment before `moment`."""
    wanted = {world.lab.nodes[0].interface: world.settings.service_vlan}
    wanted |= {port: vlan for _sw, port, vlan in _batch(world)}
    return any(
        a.at < moment and all(a.vlans.get(port) == vlan for port, vlan in wanted.items())
        for a in watch.history
    )


def drop_before(workdir: Path, env: Env) -> Outcome:
    """The session drops on the commit RPC before the switch applies anything."""
    fault = SwitchFault(
        "session dropped before commit",
        lambda sw: sw.faults.drop_next("commit"),
        SESSION_LOST,
        applied=False,
    )
    return run_switch_fault(workdir, fault)


def drop_after(workdir: Path, env: Env) -> Outcome:
    """The switch applies the confirmed commit, then the session drops before the reply."""
    fault = SwitchFault(
        "session dropped after commit",
        lambda sw: sw.faults.drop_next("commit", after=True),
        SESSION_LOST,
        applied=True,
    )
    return run_switch_fault(workdir, fault)


def commit_refused(workdir: Path, env: Env) -> Outcome:
    """The switch refuses the commit once (a message naming no port: the queue bisects)."""
    fault = SwitchFault(
        "commit refused",
        lambda sw: sw.faults.fail_next_commit("configuration check-out failed"),
        "configuration check-out failed",
        applied=False,
        error_ok="configuration check-out failed",
    )
    return run_switch_fault(workdir, fault)


def never_confirmed(workdir: Path, env: Env) -> Outcome:
    """The confirmed commit is applied, its confirmation is lost: the switch rolls back."""
    fault = SwitchFault(
        "commit never confirmed (rollback)",
        lambda sw: sw.faults.drop_next("commit"),
        SESSION_LOST,
        applied=True,
        arm_after=2,
    )
    return run_switch_fault(workdir, fault)


def lock_held(workdir: Path, env: Env) -> Outcome:
    """Another NETCONF session holds the configuration lock beyond the driver's budget."""
    fault = SwitchFault(
        "configuration lock held by another session",
        lambda sw: None,
        "configuration database locked",
        applied=False,
        error_ok="configuration database locked",
    )
    with driver_lock_wait(LOCK_BUDGET):
        return run_switch_fault(workdir, fault, hold=_hold_lock)


def _hold_lock(world: World) -> threading.Thread:
    """An operator's session takes `lock-configuration`, keeps it LOCK_HELD s, lets go."""
    target = world.lab.fleet.switches[0].target()
    session = manager.connect(
        host=target.host,
        port=target.port,
        username=target.username,
        password=target.password,
        device_params={"name": "junos"},
        hostkey_verify=False,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    session.rpc(etree.Element("lock-configuration"))

    def release() -> None:
        time.sleep(LOCK_HELD)
        session.rpc(etree.Element("unlock-configuration"))
        session.close_session()

    thread = threading.Thread(target=release, name="lock-holder", daemon=True)
    thread.start()
    return thread


def out_of_band(workdir: Path, env: Env) -> Outcome:
    """Ports changed by hand on the switch right after the batch landed (the terminate is
    still erasing): drift the reconciler must report and fix."""

    def arm(sw) -> None:
        # Run off the switch's loop: the console change itself commits on that loop.
        threading.Thread(target=_hand_changes, args=(sw,), daemon=True).start()

    fault = SwitchFault("port changed by hand on the switch", arm, "", applied=True, arm_after=3)
    return run_switch_fault(workdir, fault, target=_hand_changes_reported)


HAND_CHANGES = (("ge-0/0/1", 1), ("ge-0/0/3", 999))  # a node's port back to the factory
# VLAN, another onto an unmanaged VLAN


def _hand_changes(sw) -> None:
    for interface, vlan in HAND_CHANGES:
        sw.set_port_vlan_out_of_band(interface, vlan)


def _hand_changes_reported(
    _world: World, _fault: SwitchFault, drift: list[Drift], _watch: Watch
) -> Hit:
    """The hand-made changes are what the reconciler found: each port, with its VLAN."""
    found = sorted((d.interface, d.actual_vlan) for d in drift)
    missing = [change for change in HAND_CHANGES if change not in found]
    return Hit(not missing, f"drift found {found}" + (f", missing {missing}" if missing else ""))


# ----------------------------------------------------------------------------- serve workers


def _spawn_all(world: World) -> list[str]:
    names = []
    with world.db.session() as session:
        for i, node in enumerate(world.lab.nodes):
            project = ("alpha", "beta")[i % 2]
            name = f"{project}-{node.name}"
            instances.create_instance(
                session,
                name,
                project,
                "net",
                node.name,
                world.lab.image_url,
                world.lab.image_sha256,
                settings=world.settings,
            )
            names.append(name)
    return names


@contextlib.contextmanager
def _workers(world: World, workdir: Path, count: int) -> Iterator[list]:
    """`count` serve workers behind one failover address for the agents."""
    ports = [free_port() for _ in range(count)]
    proxy = Failover(ports)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    agent_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    # the nodes' firmware fetches its boot script where the agents reach the workers
    world.lab.settings = dataclasses.replace(world.lab.settings, agent_url=agent_url)
    procs = []
    try:
        for i, port in enumerate(ports):
            config = write_worker_config(
                workdir / f"w{i}.toml",
                world,
                f"127.0.0.1:{port}",
                agent_url=agent_url,
                step_timeout=60.0,
                poll_interval=0.2,
                lease_seconds=2.0,
                switch_timeout=30.0,
            )
            procs.append(serve(config, workdir / f"w{i}.log"))
        yield procs
    finally:
        stop_workers(procs)
        proxy.shutdown()


def _all_active(world: World, names: list[str]) -> bool:
    with world.db.session() as session:
        states = list(session.scalars(select(Instance.state).where(Instance.name.in_(names))))
    return states == ["active"] * len(names)


def _commit_in_flight(world: World, steps: tuple[str, ...]) -> str | None:
    """The lease owner of an instance at one of `steps` while the switch is locked."""
    if world.lab.fleet.switches[0].lock_holder() is None:
        return None
    with world.db.session() as session:
        return session.scalar(
            select(Instance.lease_owner).where(
                Instance.step.in_(steps), Instance.lease_owner.is_not(None)
            )
        )


def kill_worker(workdir: Path, env: Env) -> Outcome:
    """Three workers on PostgreSQL; the one committing a batch of port moves is killed -9."""
    assert env.cluster is not None, "needs PostgreSQL"
    url = env.cluster.new_database()
    with world_with(workdir, nodes=3, commit_latency=0.5, database_url=url) as world:
        switch = world.lab.fleet.switches[0]
        watch = watch_world(world)
        with _workers(world, workdir, 3) as procs:
            names = _spawn_all(world)
            owner = _await_commit(world, ("port_to_service", "port_to_project"), timeout=90)
            t0 = time.monotonic()
            crash = _kill_owner(owner, procs)
            wait_until(lambda: _all_active(world, names), timeout=120, interval=0.2)
        drift, intents = settle(world.db, switch)
        seconds = time.monotonic() - t0
        findings = audit(world.db, switch, watch, drift, intents, crashes=[crash])
        hit = Hit(
            owner is not None and bool(findings.reapplied),
            f"killed {owner or 'nobody (no commit caught in flight)'} holding the switch; "
            f"steps run again after the kill: {findings.reapplied or 'none'}",
        )
        recovered = owner is not None and _all_active(world, names) and not findings.unreported
    return Outcome(
        "worker killed -9 mid-batch", hit, recovered and not findings.stuck, seconds, findings
    )


def _await_commit(world: World, steps: tuple[str, ...], timeout: float) -> str | None:
    """Poll until a worker is committing a port move (see `_commit_in_flight`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if owner := _commit_in_flight(world, steps):
            return owner
        time.sleep(0.02)
    return None


def _kill_owner(owner: str | None, procs: list) -> datetime:
    if owner is not None:
        pid = int(owner.split(":")[1])
        kill9(pid)
        next(p for p in procs if p.pid == pid).wait()
    return now()


def db_restart(workdir: Path, env: Env) -> Outcome:
    """PostgreSQL restarted under a serve worker with a commit in flight; it must finish."""
    bin_dir = find_pg_bin()
    assert bin_dir is not None, "needs PostgreSQL"
    cluster = PgCluster(bin_dir)
    cluster.start()
    try:
        return _db_restart(workdir, cluster)
    finally:
        cluster.stop()


def _db_restart(workdir: Path, cluster: PgCluster) -> Outcome:
    url = cluster.new_database()
    with world_with(workdir, nodes=2, commit_latency=0.5, database_url=url) as world:
        switch = world.lab.fleet.switches[0]
        watch = watch_world(world)
        with _workers(world, workdir, 1):
            names = _spawn_all(world)
            caught = _await_commit(world, ("port_to_service",), timeout=60) is not None
            t0 = time.monotonic()
            away = restart_postgres(cluster)
            crash = now()
            wait_until(
                lambda: _all_active(world, names) or _any_error(world), timeout=120, interval=0.2
            )
            wait_final(world.db, names, timeout=60)
        drift, intents = settle(world.db, switch)
        seconds = time.monotonic() - t0
        findings = audit(world.db, switch, watch, drift, intents, crashes=[crash])
        hit = Hit(
            caught,
            f"restart {'with a port move committing' if caught else 'outside a commit'}, "
            f"database away {away:.1f}s",
        )
        recovered = _all_active(world, names) and not findings.unreported
    return Outcome("database restarted", hit, recovered and not findings.stuck, seconds, findings)


def _any_error(world: World) -> bool:
    with world.db.session() as session:
        return session.scalar(select(Instance.id).where(Instance.state == "error")) is not None


SCENARIOS: dict[str, Scenario] = {
    "kill-worker": kill_worker,
    "drop-before-commit": drop_before,
    "drop-after-commit": drop_after,
    "commit-refused": commit_refused,
    "never-confirmed": never_confirmed,
    "lock-held": lock_held,
    "out-of-band": out_of_band,
    "db-restart": db_restart,
}
