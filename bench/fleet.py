#!/usr/bin/env python
"""Fleet benchmark: metalnet's switch queue against per-port commits.

Real Junos commits take seconds, so what matters at fleet scale is how many commits
a mass change costs and whether switches are worked in parallel. This script starts
simulated Junos switches (real NETCONF over SSH, a configurable commit latency),
moves every node's port to a new VLAN in three ways and reads every port back over
NETCONF to prove the moves really happened:

* ``per-port``: the honest baseline, what per-port tools do -- for every change a new
  session, lock, load, ONE plain commit, unlock and close, serialised per switch,
  switches in parallel. networking-generic-switch's Junos device
  (``devices/netmiko_devices/juniper.py``) opens a session per change, enters
  ``configure private`` and issues one plain ``commit`` (retried while the database
  is locked); it never uses commit confirmed;
* ``per-port-confirmed``: the same with commit confirmed then confirm (two device
  commits per port), the baseline earlier reports used; kept to show both ratios;
* ``metalnet``: every change submitted at once through the switch service (guard,
  desired state in the inventory database, the queue: the database cost is included),
  on a new service whose sessions open during the burst (cold: what one `metalnet
  switch apply` command pays);
* ``metalnet-warm``: the same burst through a service that already holds its switch
  sessions, as `metalnet serve` does after its first change to each switch (its lanes
  keep their sessions open); a burst of moves to the service VLAN opens them first,
  unmeasured.

Every node holds an instance at its spawn's last step (``port_to_project``), so the
isolation guard admits both the service VLAN and the instance's project VLAN: the
metalnet runs move ports exactly as the lifecycle's last spawn step does.

It then replays requests arriving one at a time (``--rate`` per second for
``--duration`` seconds) through metalnet, and with ``--sweep`` repeats the burst
over several fleet sizes, writing a table and a plot. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import select

from metalnet import inventory
from metalnet.config import Settings, load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.db.models import Instance
from metalnet.lifecycle import instances
from metalnet.sim.switch import SimFleet
from metalnet.switches import hostkeys
from metalnet.switches.base import PortChange, SwitchDriver, SwitchError, SwitchTarget
from metalnet.switches.changelog import ChangeLog
from metalnet.switches.directory import SwitchDirectory
from metalnet.switches.junos import JunosDriver
from metalnet.switches.queue import CommitRecord
from metalnet.switches.service import SwitchService

USERNAME, PASSWORD = "netconf", "bench-switch-pw"
DRIVER_TIMEOUT = 120.0
SWEEP_SIZES = ((1, 10), (1, 40), (5, 200), (20, 800), (50, 2000))
# A VLAN block per run step, so every step really changes every port it touches; the
# metalnet steps use the nodes' project VLANs (PROJECT_VLANS + project) and the service VLAN.
PER_PORT_VLANS, CONFIRMED_VLANS, PROJECT_VLANS = 100, 150, 200
VLAN_SPREAD = 20
# Threads making arrival-scenario calls, like a service's worker pool: a request that
# finds them all busy waits for one, and that wait counts in its latency.
CALLERS = 256


# ----------------------------------------------------------------------------- the fleet


@dataclass(frozen=True)
class SwitchInfo:
    """Where one simulated switch listens (picklable, crosses the process boundary)."""

    name: str
    host: str
    port: int

    def target(self) -> SwitchTarget:
        """Connection details for a driver."""
        return SwitchTarget(self.name, self.host, self.port, USERNAME, PASSWORD)


def _serve_fleet(conn: Connection, names: Sequence[str], ports: int, commit_latency: float) -> None:
    """Run simulated switches and answer the parent's questions until told to stop.

    Runs in a child process (or a thread for ``--sim-processes 0``). Device commits
    are counted with `change_count` (the simulator's history is capped at 50); an
    `on_commit` listener would make every commit work out its port VLANs as well.
    """
    fleet = SimFleet()
    for name in names:
        fleet.add(
            name, ports=ports, username=USERNAME, password=PASSWORD, commit_latency=commit_latency
        )
    conn.send([SwitchInfo(s.name, s.host, s.port) for s in fleet.switches])
    while (request := conn.recv()) != "stop":
        if request == "stats":
            commits = sum(s.change_count() for s in fleet.switches)
            conn.send({"commits": commits, "cpu": time.process_time()})
    fleet.stop()
    conn.send("stopped")


class SimHost:
    """The simulated fleet, split over `processes` child processes (0: a thread here).

    With two cores, SSH handshakes and NETCONF parsing on both ends compete for one
    GIL when the simulator shares the client's process; a separate process gives each
    side its own interpreter, as real switches would.
    """

    def __init__(self, switches: int, ports: int, commit_latency: float, processes: int) -> None:
        names = [f"sw{i + 1:02d}" for i in range(switches)]
        groups = [names[i :: max(processes, 1)] for i in range(max(processes, 1))]
        context = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._workers: list[multiprocessing.process.BaseProcess | threading.Thread] = []
        for group in (g for g in groups if g):
            parent, child = context.Pipe()
            args = (child, group, ports, commit_latency)
            worker: Any
            if processes:
                worker = context.Process(target=_serve_fleet, args=args, daemon=True)
            else:
                worker = threading.Thread(target=_serve_fleet, args=args, daemon=True)
            worker.start()
            self._conns.append(parent)
            self._workers.append(worker)
        found = [info for conn in self._conns for info in conn.recv()]
        self.switches = sorted(found, key=lambda s: s.name)
        self.separate = processes > 0

    def stats(self) -> tuple[int, float | None]:
        """Device commits so far, and the simulator's CPU seconds (None when in-process)."""
        for conn in self._conns:
            conn.send("stats")
        replies = [conn.recv() for conn in self._conns]
        cpu = sum(r["cpu"] for r in replies) if self.separate else None
        return sum(r["commits"] for r in replies), cpu

    def stop(self) -> None:
        """Stop every switch and wait for the workers to end."""
        for conn in self._conns:
            conn.send("stop")
            conn.recv()
        for worker in self._workers:
            worker.join(timeout=30)


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Move:
    """One node's port, and the VLAN a benchmark step wants it in."""

    node: str
    switch: str
    interface: str
    vlan: int


def cabling(switches: Sequence[SwitchInfo], nodes: int, ports: int) -> list[Move]:
    """Node i sits on switch i mod S, port i div S: nodes spread evenly, like racks."""
    if nodes > len(switches) * ports:
        raise SystemExit(f"{nodes} nodes do not fit on {len(switches)} switches x {ports} ports")
    return [
        Move(f"n{i + 1:04d}", switches[i % len(switches)].name, f"ge-0/0/{i // len(switches)}", 1)
        for i in range(nodes)
    ]


def retarget(moves: Iterable[Move], base: int) -> list[Move]:
    """The same ports, each wanted in one of VLAN_SPREAD VLANs starting at `base`."""
    return [dataclasses.replace(m, vlan=base + i % VLAN_SPREAD) for i, m in enumerate(moves)]


# ----------------------------------------------------------------------------- measuring


class CommitClock:
    """When each (switch, port, VLAN) was committed, stamped as the commit returns.

    Stamping at the commit rather than when a caller wakes up keeps the latency free
    of thread scheduling on the client, and works for one call that waits for many.
    """

    def __init__(self) -> None:
        self.stamps: dict[tuple[str, str, int], float] = {}
        self._lock = threading.Lock()

    def stamp(self, switch: str, changes: Iterable[PortChange]) -> None:
        now = time.monotonic()
        with self._lock:
            for change in changes:
                self.stamps.setdefault((switch, change.interface, change.vlan), now)

    def latencies(self, requests: Iterable[tuple[Move, float]]) -> list[float]:
        """Request-to-committed seconds of every request that was committed."""
        return [
            self.stamps[key] - asked
            for move, asked in requests
            if (key := (move.switch, move.interface, move.vlan)) in self.stamps
        ]


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (None for no values): p99 of 800 is the 792nd smallest."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass
class Usage:
    """Wall and CPU seconds of one step, client and simulator, and device commits."""

    host: SimHost
    wall: float = 0.0
    client_cpu: float = 0.0
    sim_cpu: float | None = None
    device_commits: int = 0
    _commits: int = field(default=0, init=False, repr=False)
    _sim_cpu: float | None = field(default=None, init=False, repr=False)
    _cpu: float = field(default=0.0, init=False, repr=False)
    _wall: float = field(default=0.0, init=False, repr=False)

    def __enter__(self) -> Usage:
        self._commits, self._sim_cpu = self.host.stats()
        self._cpu, self._wall = time.process_time(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self._wall
        self.client_cpu = time.process_time() - self._cpu
        commits, sim_cpu = self.host.stats()
        self.device_commits = commits - self._commits
        if sim_cpu is not None and self._sim_cpu is not None:
            self.sim_cpu = sim_cpu - self._sim_cpu


@dataclass
class StepResult:
    """What one mode or scenario measured, as reported in the tables and the JSON."""

    mode: str
    switches: int
    nodes: int
    makespan: float | None = None
    latencies: list[float] = field(default_factory=list)
    transactions: int = 0
    device_commits: int = 0
    sessions: int = 0
    failed: int = 0
    verified: int = 0
    mismatches: list[str] = field(default_factory=list)
    client_cpu: float = 0.0
    sim_cpu: float | None = None
    skipped: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The JSON form: percentiles instead of the raw latencies."""
        data = dataclasses.asdict(self)
        data.pop("latencies")
        data.update(
            {f"p{p}": _round(percentile(self.latencies, p)) for p in (50, 95, 99)},
            max_latency=_round(max(self.latencies, default=None)),
            makespan=_round(self.makespan),
            client_cpu=_round(self.client_cpu),
            sim_cpu=_round(self.sim_cpu),
            mismatches=self.mismatches[:10],
        )
        return data

    def absorb(self, usage: Usage) -> None:
        self.device_commits = usage.device_commits
        self.client_cpu = usage.client_cpu
        self.sim_cpu = usage.sim_cpu


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ----------------------------------------------------------------------------- verifying


def verify(host: SimHost, moves: Sequence[Move], result: StepResult) -> None:
    """Read every switch's ports over NETCONF (in parallel) and compare with the plan."""
    wanted: dict[str, dict[str, int]] = {}
    for move in moves:
        wanted.setdefault(move.switch, {})[move.interface] = move.vlan
    by_name = {s.name: s for s in host.switches}

    def check(switch: str) -> list[str]:
        with JunosDriver(by_name[switch].target(), timeout=DRIVER_TIMEOUT) as driver:
            actual = driver.read_ports(sorted(wanted[switch]))
        return [
            f"{switch} {port}: VLAN {actual[port].vlan}, wanted {vlan}"
            for port, vlan in wanted[switch].items()
            if actual[port].vlan != vlan
        ]

    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        problems = [p for found in pool.map(check, sorted(wanted)) for p in found]
    result.mismatches = problems
    result.verified = len(moves) - len(problems)


# ----------------------------------------------------------------------------- per-port


def run_per_port(host: SimHost, moves: Sequence[Move], confirmed: bool) -> StepResult:
    """Every change its own session and transaction; one thread per switch."""
    mode = "per-port-confirmed" if confirmed else "per-port"
    result = StepResult(mode, len(host.switches), len(moves))
    clock = CommitClock()
    by_switch: dict[str, list[Move]] = {}
    for move in moves:
        by_switch.setdefault(move.switch, []).append(move)
    targets = {s.name: s.target() for s in host.switches}
    counts = {"sessions": 0, "transactions": 0, "failed": 0}
    lock = threading.Lock()

    def work(switch: str) -> None:
        for move in by_switch[switch]:
            outcome = _one_port(targets[switch], move, clock, confirmed)
            with lock:
                counts["sessions"] += outcome != "unreachable"
                counts["transactions"] += outcome in ("ok", "refused")
                counts["failed"] += outcome != "ok"

    with Usage(host) as usage:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(by_switch)) as pool:
            list(pool.map(work, by_switch))
    result.absorb(usage)
    result.makespan = usage.wall
    result.latencies = clock.latencies((m, started) for m in moves)
    result.sessions, result.transactions = counts["sessions"], counts["transactions"]
    result.failed = counts["failed"]
    verify(host, moves, result)
    return result


def _one_port(target: SwitchTarget, move: Move, clock: CommitClock, confirmed: bool) -> str:
    """Open, lock, load, commit (plain, or confirmed + confirm), unlock, close.

    Returns 'ok', 'refused' or 'unreachable'.
    """
    driver = JunosDriver(target, timeout=DRIVER_TIMEOUT, confirm_minutes=5 if confirmed else 0)
    try:
        driver.open()
    except SwitchError:
        return "unreachable"
    try:
        change = PortChange(move.interface, move.vlan)
        driver.apply([change])
        clock.stamp(move.switch, [change])
        return "ok"
    except SwitchError:
        return "refused"
    finally:
        driver.close()


# ----------------------------------------------------------------------------- metalnet


class CountingDirectory(SwitchDirectory):
    """The service's switch directory, counting the sessions it opens."""

    def __init__(self, db: Database, single_commit: bool) -> None:
        super().__init__(db, db.settings.switch_timeout)
        self.single_commit = single_commit
        self.sessions = 0
        self._count_lock = threading.Lock()

    def connect(self, name: str) -> SwitchDriver:
        driver = super().connect(name)
        if self.single_commit and isinstance(driver, JunosDriver):
            driver.confirm_minutes = 0
        with self._count_lock:
            self.sessions += 1
        return driver


class StampingChangeLog(ChangeLog):
    """The change log as metalnet keeps it, stamping each committed change on the clock."""

    def __init__(self, db: Database, clock: CommitClock) -> None:
        super().__init__(db)
        self.clock = clock

    def record(self, commit: CommitRecord) -> None:
        if commit.ok:
            self.clock.stamp(commit.switch, commit.changes)
        super().record(commit)


def bench_service(
    db: Database, clock: CommitClock, single_commit: bool
) -> tuple[SwitchService, CountingDirectory]:
    """The switch service as metalnet runs it, plus a commit clock and a session counter."""
    directory = CountingDirectory(db, single_commit)
    changelog = StampingChangeLog(db, clock)
    return SwitchService(db, directory=directory, changelog=changelog), directory


def make_database(workdir: Path, host: SimHost, moves: Sequence[Move]) -> Database:
    """A fresh SQLite inventory: the fleet's switches (host keys read as `switch add`
    reads them), cabled nodes, and their instances.

    Node i holds an instance of project i mod VLAN_SPREAD (network VLAN PROJECT_VLANS +
    i mod VLAN_SPREAD) at the spawn's last step, `port_to_project`.
    """
    settings = dataclasses.replace(
        load_settings(None, f"sqlite:///{workdir / 'metalnet.db'}"),
        switch_timeout=DRIVER_TIMEOUT,
        image_server="http://127.0.0.1",
    )
    db = Database(settings)
    upgrade(db.engine)
    with db.session() as session:
        for switch in host.switches:
            address = f"{switch.host}:{switch.port}"
            added = inventory.add_switch(session, switch.name, "junos", address, USERNAME, PASSWORD)
            # read now, as `metalnet switch add` does: no first-use recording in the runs
            added.host_key = hostkeys.scan(switch.host, switch.port, 10.0)
        for i, move in enumerate(moves):
            mac = f"52:54:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"
            bmc = f"ipmi://127.0.0.1:{10000 + i}"
            inventory.add_node(
                session, settings, move.node, mac, move.switch, move.interface, bmc,
                initial_erase=False,
            )  # fmt: skip
    with db.session() as session:
        _spawns_at_last_step(session, settings, [m.node for m in moves])
    return db


def _spawns_at_last_step(session: Any, settings: Settings, nodes: Sequence[str]) -> None:
    for p in range(min(VLAN_SPREAD, len(nodes))):
        inventory.create_project(session, f"p{p:02d}")
        cidr = f"10.{p}.0.0/16"
        inventory.create_network(session, settings, f"p{p:02d}", "net", cidr, PROJECT_VLANS + p)
    image, digest = "http://127.0.0.1/bench.img", "0" * 64
    for i, node in enumerate(nodes):
        project = f"p{i % VLAN_SPREAD:02d}"
        instances.create_instance(
            session, f"i{i:04d}", project, "net", node, image, digest, settings=settings
        )
    session.flush()
    for inst in session.scalars(select(Instance)):
        inst.state, inst.step = "building", "port_to_project"


def project_vlans(moves: Iterable[Move]) -> list[Move]:
    """Every node's port to its instance's project VLAN (see `make_database`)."""
    return retarget(moves, PROJECT_VLANS)


def run_metalnet(
    host: SimHost, db: Database, moves: Sequence[Move], single_commit: bool, warm: bool
) -> StepResult:
    """All changes at once through `SwitchService.set_ports`, as `metalnet switch apply` would;
    `warm`: on sessions a previous burst (to the service VLAN, not measured) left open."""
    result = StepResult("metalnet-warm" if warm else "metalnet", len(host.switches), len(moves))
    clock = CommitClock()
    service, directory = bench_service(db, clock, single_commit)
    try:
        if warm:
            vlan = db.settings.service_vlan
            service.set_ports([(m.switch, m.interface, vlan) for m in moves])
        commits, sessions = service.queue.commits, directory.sessions
        with Usage(host) as usage:
            started = time.monotonic()
            outcomes = service.set_ports([(m.switch, m.interface, m.vlan) for m in moves])
    finally:
        service.close()
    result.absorb(usage)
    result.makespan = usage.wall
    result.latencies = clock.latencies((m, started) for m in moves)
    result.transactions = service.queue.commits - commits
    result.sessions = directory.sessions - sessions
    result.failed = sum(not o.ok for o in outcomes)
    verify(host, moves, result)
    return result


def run_arrival(
    host: SimHost,
    db: Database,
    moves: Sequence[Move],
    rate: float,
    duration: float,
    single_commit: bool,
) -> StepResult:
    """Requests arrive one at a time, `rate` per second, each a `move_node` call.

    The ports start in their project VLANs (the burst left them there); round r of
    requests moves them to the service VLAN when r is even, back to the project when odd.
    """
    count = max(1, round(rate * duration))
    service_vlan = db.settings.service_vlan
    projects = project_vlans(moves)
    requests = [
        dataclasses.replace(
            projects[k % len(moves)],
            vlan=service_vlan if (k // len(moves)) % 2 == 0 else projects[k % len(moves)].vlan,
        )
        for k in range(count)
    ]
    result = StepResult("metalnet-arrival", len(host.switches), len(moves))
    clock = CommitClock()
    service, directory = bench_service(db, clock, single_commit)
    asked: list[tuple[Move, float]] = []
    refused: list[Move] = []

    def call(move: Move) -> None:
        try:
            service.move_node(move.node, move.vlan)
        except SwitchError:
            refused.append(move)

    try:
        with Usage(host) as usage, ThreadPoolExecutor(max_workers=CALLERS) as pool:
            started = time.monotonic()
            for k, move in enumerate(requests):
                time.sleep(max(0.0, started + k / rate - time.monotonic()))
                asked.append((move, time.monotonic()))
                pool.submit(call, move)
    finally:
        service.close()
    result.absorb(usage)
    result.makespan = usage.wall
    result.latencies = clock.latencies(asked)
    result.transactions = service.queue.commits
    result.sessions = directory.sessions
    result.failed = len(refused) + len(asked) - len(result.latencies)
    span = asked[-1][1] - asked[0][1]
    result.extra = {
        "requests": len(asked),
        "offered_rate": rate,
        "achieved_rate": round((len(asked) - 1) / span, 2) if span > 0 else 0.0,
        "mean_batch": round(len(asked) / max(result.transactions, 1), 2),
    }
    final = {(m.switch, m.interface): m for m in requests}
    verify(host, list(final.values()), result)
    return result


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Options:
    """Everything a run needs, from the command line."""

    switches: int
    ports: int
    nodes: int
    commit_latency: float
    rate: float
    duration: float
    sim_processes: int
    per_port_max_nodes: int
    single_commit: bool
    arrival: bool
    sweep: bool
    json_path: Path | None
    plot_path: Path | None


def run_size(options: Options, switches: int, nodes: int, arrival: bool) -> list[StepResult]:
    """One fleet, one database: per-port burst, metalnet burst, then arrivals if asked."""
    host = SimHost(switches, options.ports, options.commit_latency, options.sim_processes)
    try:
        with tempfile.TemporaryDirectory(prefix="metalnet-bench-") as tmp:
            plan = cabling(host.switches, nodes, options.ports)
            db = make_database(Path(tmp), host, plan)
            results = [
                _per_port_or_skip(options, host, plan, confirmed=False),
                _per_port_or_skip(options, host, plan, confirmed=True),
            ]
            burst = project_vlans(plan)
            for warm in (False, True):
                results.append(run_metalnet(host, db, burst, options.single_commit, warm))
            if arrival:
                results.append(
                    run_arrival(
                        host, db, plan, options.rate, options.duration, options.single_commit
                    )
                )
            db.engine.dispose()
            return results
    finally:
        host.stop()


def _per_port_or_skip(
    options: Options, host: SimHost, plan: Sequence[Move], confirmed: bool
) -> StepResult:
    if len(plan) > options.per_port_max_nodes:
        return StepResult(
            "per-port-confirmed" if confirmed else "per-port",
            len(host.switches),
            len(plan),
            skipped=f"{len(plan)} nodes > --per-port-max-nodes {options.per_port_max_nodes}",
        )
    vlans = CONFIRMED_VLANS if confirmed else PER_PORT_VLANS
    return run_per_port(host, retarget(plan, vlans), confirmed)


# ----------------------------------------------------------------------------- reporting


def targets(results: Sequence[StepResult], latency: float) -> list[dict[str, Any]]:
    """The issue's targets, judged on this run's main size (L = the commit latency)."""
    by_mode = {r.mode: r for r in results}
    checks = [
        _target(f"{mode} makespan <= 2.5 L", by_mode[mode].makespan, 2.5 * latency, "<=")
        for mode in ("metalnet", "metalnet-warm")
    ]
    honest = speedup(results)["per-port"]
    if honest is not None:
        checks.append(_target("speed-up vs per-port (plain commit) >= 15x", honest, 15, ">="))
    if "metalnet-arrival" in by_mode:
        arrival = by_mode["metalnet-arrival"]
        checks.append(
            _target("arrival p99 <= 2.5 L", percentile(arrival.latencies, 99), 2.5 * latency, "<=")
        )
    return checks


def _target(name: str, value: float | None, bound: float, op: str) -> dict[str, Any]:
    ok = value is not None and (value <= bound if op == "<=" else value >= bound)
    return {"target": name, "value": _round(value), "bound": bound, "pass": ok}


def markdown_table(results: Sequence[StepResult]) -> str:
    """One row per step: the numbers the README tables show."""
    head = [
        "mode",
        "switches",
        "nodes",
        "makespan s",
        "p50 s",
        "p95 s",
        "p99 s",
        "transactions",
        "device commits",
        "sessions",
        "verified",
        "failed",
        "client CPU s",
        "sim CPU s",
    ]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        rows.append("| " + " | ".join(str(c) for c in _cells(r)) + " |")
    return "\n".join(rows)


def _cells(r: StepResult) -> list[object]:
    if r.skipped:
        return [r.mode, r.switches, r.nodes, f"skipped ({r.skipped})", *[""] * 10]
    s = r.summary()
    checked = r.verified + len(r.mismatches)
    return [
        r.mode,
        r.switches,
        r.nodes,
        s["makespan"],
        s["p50"],
        s["p95"],
        s["p99"],
        r.transactions,
        r.device_commits,
        r.sessions,
        f"{r.verified}/{checked}",
        r.failed,
        s["client_cpu"],
        "in-process" if r.sim_cpu is None else s["sim_cpu"],
    ]


def bounds(result: StepResult, latency: float, single_commit: bool) -> dict[str, float | None]:
    """Where a step's time went: device commit floor vs. CPU on either side.

    Each device commit is `latency` seconds of silence. A per-port transaction is one
    plain commit (two for per-port-confirmed) and a switch's ports go one after the
    other; a metalnet transaction is one commit with --single-commit, otherwise two
    (commit confirmed, then the confirming commit).
    """
    if result.makespan is None:
        return {}
    if result.mode.startswith("per-port"):
        serial = math.ceil(result.nodes / result.switches)
        floor = latency * serial * (2 if result.mode == "per-port-confirmed" else 1)
    else:
        floor = latency * (1 if single_commit else 2)
    return {
        "commit_floor_s": floor,
        "above_floor_s": _round(result.makespan - floor),
        "client_cpu_share": _round(result.client_cpu / result.makespan),
        "sim_cpu_share": None
        if result.sim_cpu is None
        else _round(result.sim_cpu / result.makespan),
    }


def speedup(results: Sequence[StepResult]) -> dict[str, float | None]:
    """Per-port makespan / metalnet makespan for each baseline that ran."""
    by_mode = {r.mode: r for r in results}
    fast = by_mode["metalnet"].makespan
    ratios: dict[str, float | None] = {}
    for baseline in ("per-port", "per-port-confirmed"):
        slow = by_mode[baseline].makespan
        ratios[baseline] = None if slow is None or not fast else round(slow / fast, 1)
    return ratios


def plot(sweep: Sequence[Sequence[StepResult]], path: Path, latency: float) -> None:
    """Makespan against fleet size (nodes, log scale), one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    modes = (("per-port", "o"), ("per-port-confirmed", "^"), ("metalnet", "s"))
    for mode, marker in (*modes, ("metalnet-warm", "D")):
        points = [r for size in sweep for r in size if r.mode == mode and r.makespan is not None]
        axes.plot(
            [r.nodes for r in points], [r.makespan for r in points], marker=marker, label=mode
        )
        for r in points:
            axes.annotate(
                f"{r.switches} sw",
                (r.nodes, r.makespan),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    axes.axhline(2.5 * latency, color="grey", linestyle=":", label="target 2.5 L")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("nodes moved (number of switches annotated)")
    axes.set_ylabel("makespan (s)")
    axes.set_title(f"Moving every node's port to a new VLAN, commit latency L = {latency:g} s")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def report(
    options: Options, main: list[StepResult], sweep: list[list[StepResult]]
) -> dict[str, Any]:
    """Print the tables, targets and bounds; return the JSON document."""
    checks = targets(main, options.commit_latency)
    document: dict[str, Any] = {
        "options": {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(options).items()
        },
        "results": [r.summary() for r in main],
        "speedup": speedup(main),
        "targets": checks,
        "bounds": {r.mode: bounds(r, options.commit_latency, options.single_commit) for r in main},
    }
    size = f"{options.switches} switches, {options.nodes} nodes"
    print(f"\n## {size}, L = {options.commit_latency:g} s\n")
    print(markdown_table(main))
    print()
    for baseline, ratio in document["speedup"].items():
        shown = "n/a" if ratio is None else f"{ratio}x"
        print(f"speed-up metalnet vs {baseline}: {shown}")
    for r in main:
        print(f"bounds {r.mode}: {document['bounds'][r.mode]}")
    for check in checks:
        verdict = "PASS" if check["pass"] else "FAIL"
        print(f"{verdict}  {check['target']}: {check['value']} (bound {check['bound']:g})")
    if sweep:
        flat = [r for size in sweep for r in size]
        print("\n## sweep\n")
        print(markdown_table(flat))
        document["sweep"] = [r.summary() for r in flat]
        document["sweep_table"] = markdown_table(flat)
    document["table"] = markdown_table(main)
    return document


# ----------------------------------------------------------------------------- CLI


def parse(argv: Sequence[str] | None) -> Options:
    """Command-line options; --quick overrides sizes for a smoke run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--ports", type=int, default=48, help="ports per switch")
    parser.add_argument("--nodes", type=int, default=800, help="nodes spread over the switches")
    parser.add_argument("--commit-latency", type=float, default=1.0, help="L, seconds per commit")
    parser.add_argument("--rate", type=float, default=50.0, help="arrivals per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals")
    parser.add_argument("--no-arrival", action="store_true", help="skip the arrival scenario")
    parser.add_argument(
        "--sim-processes",
        type=int,
        default=1,
        help="processes running the simulated switches (0: a thread in this one)",
    )
    parser.add_argument(
        "--per-port-max-nodes",
        type=int,
        default=2000,
        help="skip the per-port modes for larger sizes (each port takes ~L + 0.2 s, or "
        "~2 L + 0.2 s with commit confirmed)",
    )
    parser.add_argument(
        "--single-commit",
        action="store_true",
        help="drive metalnet's Junos sessions without commit confirmed (one device "
        "commit per transaction), to show what the confirmation costs",
    )
    parser.add_argument("--sweep", action="store_true", help=f"also run sizes {SWEEP_SIZES}")
    parser.add_argument("--json", type=Path, dest="json_path")
    parser.add_argument("--plot", type=Path, dest="plot_path", help="PNG of the sweep")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke preset: 4 switches, 8 nodes, L=0.1, 1 s of arrivals at 10/s",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.switches, args.nodes, args.commit_latency = 4, 8, 0.1
        args.rate, args.duration = 10.0, 1.0
    return Options(
        switches=args.switches,
        ports=args.ports,
        nodes=args.nodes,
        commit_latency=args.commit_latency,
        rate=args.rate,
        duration=args.duration,
        sim_processes=args.sim_processes,
        per_port_max_nodes=args.per_port_max_nodes,
        single_commit=args.single_commit,
        arrival=not args.no_arrival,
        sweep=args.sweep,
        json_path=args.json_path,
        plot_path=args.plot_path,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the main size (and the sweep); exit 1 when a port did not end where asked."""
    options = parse(argv)
    main_results = run_size(options, options.switches, options.nodes, options.arrival)
    sweep = []
    if options.sweep:
        for switches, nodes in SWEEP_SIZES:
            print(f"sweep: {switches} switches, {nodes} nodes ...", file=sys.stderr, flush=True)
            sweep.append(run_size(options, switches, min(nodes, switches * options.ports), False))
    document = report(options, main_results, sweep)
    if options.json_path:  # before the plot: a plotting failure must not lose the results
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(document, indent=2) + "\n")
    if options.plot_path and sweep:
        plot(sweep, options.plot_path, options.commit_latency)
    everything = main_results + [r for size in sweep for r in size]
    return 1 if any(r.mismatches or r.failed for r in everything) else 0


if __name__ == "__main__":
    sys.exit(main())
