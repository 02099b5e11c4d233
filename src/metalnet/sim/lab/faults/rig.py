"""The stage the fault campaign plays on: a lab, a watch on the switch, and fault timing.

Everything here is real: the Junos simulator over SSH, Redfish BMCs, agent processes,
`metalnet serve` subprocesses and a throwaway PostgreSQL. The campaign's scenarios
(scenarios.py) use these pieces; the audit (audit.py) judges the result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from metalnet.db.engine import Database
from metalnet.db.models import Instance, Node
from metalnet.lifecycle import instances
from metalnet.lifecycle.invariants import port_violation
from metalnet.sim.lab.controller import write_config
from metalnet.sim.lab.postgres import PgCluster
from metalnet.sim.lab.world import World
from metalnet.sim.switch.device import SimSwitch
from metalnet.switches.junos import JunosDriver
from metalnet.switches.service import SwitchService

FINAL = ("active", "deleted", "error")


def utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back naive (they were written in UTC); PostgreSQL aware."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Activation:
    """One change of the switch's committed configuration, as the simulator reports it."""

    at: datetime
    vlans: dict[str, int | None]


@dataclass
class Watch:
    """Checks the isolation invariant on every commit of the switch and keeps its history.

    The simulator calls back on every change of its committed configuration: commits,
    automatic rollbacks of unconfirmed commits, console changes. That is every moment
    a port could sit in a foreign VLAN, so checking `port_violation` there (against the
    database as it is at that moment) sees every leak the switch ever had.
    """

    db: Database
    ports: dict[str, str]  # interface -> node name
    violations: list[str] = field(default_factory=list)
    history: list[Activation] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, switch: SimSwitch) -> Watch:
        switch.on_commit(self._on_commit)
        return self

    def _on_commit(self, _switch: SimSwitch, vlans: dict[str, int | None]) -> None:
        with self._lock:
            self.history.append(Activation(datetime.now(UTC), dict(vlans)))
        with self.db.session() as session:
            for interface, node in self.ports.items():
                if problem := port_violation(session, node, vlans.get(interface)):
                    with self._lock:
                        self.violations.append(problem)


def watch_world(world: World) -> Watch:
    """A watch over the world's one switch and every node cabled to it."""
    switch = world.lab.fleet.switches[0]
    ports = {n.interface: n.name for n in world.lab.nodes}
    return Watch(world.db, ports).attach(switch)


class Trigger:
    """Runs `action` from the switch's commit callback after `count` more activations.

    The callback runs on the switch's event loop before the commit's reply is sent, so
    a fault armed here applies to the very next RPC: this is how a campaign aims a
    fault at one particular transaction (e.g. the confirming commit of the second one).
    """

    def __init__(self, switch: SimSwitch, count: int, action: Callable[[], None]) -> None:
        self.remaining = count
        self.action = action
        self.fired = threading.Event()
        switch.on_commit(self._on_commit)

    def _on_commit(self, _switch: SimSwitch, _vlans: dict[str, int | None]) -> None:
        if self.remaining <= 0:
            return
        self.remaining -= 1
        if self.remaining == 0:
            self.action()
            self.fired.set()


def shorten_confirm(switch: SimSwitch, unit_seconds: float) -> None:
    """Make the switch's commit-confirmed "minutes" last `unit_seconds` each.

    `Lab` does not pass `confirm_unit_seconds` through to its switches, so the campaign
    sets it on the running switch's configuration database (a test-only shortcut).
    """
    switch._db.confirm_unit_seconds = unit_seconds


@contextmanager
def driver_lock_wait(seconds: float) -> Iterator[None]:
    """Shrink JunosDriver's lock budget (`lock_wait`, 60 s, not a setting) in this process."""
    defaults = JunosDriver.__init__.__kwdefaults__
    saved = defaults["lock_wait"]
    defaults["lock_wait"] = seconds
    try:
        yield
    finally:
        defaults["lock_wait"] = saved


def make_active(world: World, switching: SwitchService, name: str, node: str, project: str) -> None:
    """An ACTIVE instance on `node`, in the state a finished spawn leaves behind.

    Terminate scenarios start from here; the spawn path itself is exercised by the
    kill -9 and database-restart scenarios. The port is moved into the project VLAN by
    metalnet's own queue once the instance is active, so the watch sees a legal commit.
    """
    with world.db.session() as session:
        inst = instances.create_instance(
            session,
            name,
            project,
            "net",
            node,
            world.lab.image_url,
            world.lab.image_sha256,
            settings=world.settings,
        )
        inst.state, inst.step = "active", "active"
        session.scalar(select(Node).where(Node.name == node)).state = "active"
    switching.move_node(node, world.vlans[project])


def instance_state(db: Database, name: str) -> tuple[str, str, str | None]:
    """(state, step, error) of the newest live instance called `name`."""
    with db.session() as session:
        inst = instances.get_instance(session, name)
        return inst.state, inst.step, inst.error


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until true or `timeout` seconds passed; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def wait_final(db: Database, names: list[str], timeout: float) -> bool:
    """Wait until every named instance reached active, deleted or error."""

    def done() -> bool:
        with db.session() as session:
            states = session.scalars(select(Instance.state).where(Instance.name.in_(names)))
            return all(state in FINAL for state in states)

    return wait_until(done, timeout, interval=0.1)


# ----------------------------------------------------------------------------- processes


def write_worker_config(path: Path, world: World, listen: str, **values: object) -> Path:
    """A TOML config for one serve worker of `world`, with lab-sized timeouts."""
    s = world.settings
    return write_config(
        path,
        database_url=s.database_url,
        controller_listen=listen,
        image_server=s.image_server,
        **values,
    )


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the workers still alive (never a broad kill), then reap them."""
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in workers:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill9(pid: int) -> None:
    """kill -9 one worker by pid."""
    os.kill(pid, signal.SIGKILL)


def restart_postgres(cluster: PgCluster) -> float:
    """`pg_ctl restart -m fast` of the throwaway cluster; returns seconds it was away.

    pg_ctl reuses the options the server was started with (postmaster.opts). Fast
    mode disconnects every client, so every pooled connection of every worker dies.
    The log file must be given again: otherwise the new postmaster keeps our pipe open.
    """
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    started = time.monotonic()
    subprocess.run(
        [
            *as_user,
            str(cluster.bin_dir / "pg_ctl"),
            "-D",
            str(cluster.data),
            "-m",
            "fast",
            "-l",
            str(cluster.root / "log"),
            "-w",
            "restart",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return time.monotonic() - started
