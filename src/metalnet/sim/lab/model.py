"""The lab the isolation model drives, and the observations it judges after every step.

Everything is real: simulated Junos switches over NETCONF/SSH, Redfish BMCs, agent
processes, and a controller (REST API over HTTP, lifecycle worker, reconciler). The
tenant speaks the REST API with its project token; the admin runs the `metalnet` CLI
in-process on the same database. Observations come from outside metalnet's own
bookkeeping: the switch's committed state read back over NETCONF, what each node runs
(its BMC's power state and the disk it booted) and the disks' bytes, judged by the
one isolation rule (`lifecycle.invariants`, `switches.drift`, `switches.guard`).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, or_, select
from typer.testing import CliRunner

from metalnet import apitokens
from metalnet.controller import Controller
from metalnet.db.models import (
    AuditEntry,
    Instance,
    Network,
    Nic,
    Node,
    Project,
    SwitchChange,
    SwitchPort,
)
from metalnet.lifecycle.invariants import (
    node_state_violations,
    state_violation,
    tenant_os_violation,
)
from metalnet.lifecycle.states import SPAWN, TERMINATE
from metalnet.sim.lab.lab import BMC_PASSWORD, BMC_USER
from metalnet.sim.lab.nodes import LabNode, Seen
from metalnet.sim.lab.world import World, world_with
from metalnet.switches import guard
from metalnet.switches.drift import describe
from metalnet.switches.service import SwitchService, desired_vlan

PROJECTS = ("alpha", "beta")
NODES = 3
PORTS = 8
SWITCH = "tor1"
BUSY_INSTANCE = ("building", "deleting")
BUSY_NODE = ("cleaning",)  # a deploying node has a busy instance (NODE_STATES)
STEP_SECONDS = 60.0
# Short, so a stalled BMC fails its step quickly, yet well above what a healthy
# simulated BMC takes on a loaded machine (a Redfish call is several HTTP requests;
# 1 s was once too short in CI).
BMC_SECONDS = 3.0
POLL = 0.05


def until(
    seconds: float,
    what: str,
    ready: Callable[[], object],
    why: Callable[[], str] | None = None,
) -> object:
    """`ready()`'s first truthy value, polled until a deadline; AssertionError naming
    `what` (and what `why()` then says) when it passes."""
    deadline = time.monotonic() + seconds
    while not (value := ready()):
        if time.monotonic() > deadline:
            reason = f"; {why()}" if why is not None else ""
            raise AssertionError(f"deadline ({seconds:.0f}s) passed waiting for {what}{reason}")
        time.sleep(POLL)
    return value


@dataclass(frozen=True)
class CliResult:
    code: int
    output: str


class ModelLab:
    """A started lab with a running controller, two tenants' tokens and an admin CLI."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self.tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="model-")))
        try:
            self.world: World = self._stack.enter_context(
                world_with(self.tmp, nodes=NODES, initial_erase=True, bmc_timeout=BMC_SECONDS)
            )
            self.db_url = str(self.world.db.engine.url)
            with self.world.db.session() as s:
                self.tokens = {p: apitokens.create(s, f"{p}-tenant", p)[1] for p in PROJECTS}
            self.controller = self._stack.enter_context(Controller(self.world.db))
            base = f"http://{self.controller.host}:{self.controller.port}"
            self.http = {
                p: self._stack.enter_context(
                    httpx.Client(
                        base_url=base, headers={"Authorization": f"Bearer {t}"}, timeout=30
                    )
                )
                for p, t in self.tokens.items()
            }
            self.reader = SwitchService(self.world.db)
            self._stack.callback(self.reader.close)
            self._runner = CliRunner()
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        self._stack.close()

    # The physical world --------------------------------------------------------------

    @property
    def settings(self):
        return self.world.settings

    def node(self, name: str) -> LabNode:
        return self.world.node(name)

    @property
    def switch(self):
        return self.world.lab.fleet.switches[0]

    def interfaces(self) -> list[str]:
        return [f"ge-0/0/{i}" for i in range(PORTS)]

    # Entry points --------------------------------------------------------------------

    def admin(self, *args: str) -> CliResult:
        """`metalnet --db URL ARGS...` in-process, as an operator on the controller host."""
        from metalnet.cli.main import app

        result = self._runner.invoke(app, ["--db", self.db_url, *args], env=_CLI_ENV)
        return CliResult(result.exit_code, result.output)

    def admin_file(self, name: str, data: object) -> str:
        path = self.tmp / name
        path.write_text(json.dumps(data))
        return str(path)

    def tenant(self, project: str) -> httpx.Client:
        return self.http[project]

    # Reading the database ------------------------------------------------------------

    def instances(self) -> list[tuple[int, str, str, str, str, str | None]]:
        """(id, project, name, state, step, node) of every instance."""
        with self.world.db.session() as s:
            return [
                (i.id, i.project.name, i.name, i.state, i.step, i.node.name if i.node else None)
                for i in s.scalars(select(Instance).order_by(Instance.id))
            ]

    def node_states(self) -> dict[str, str]:
        with self.world.db.session() as s:
            return {name: state for name, state in s.execute(select(Node.name, Node.state)).all()}

    def bound(self) -> dict[str, str]:
        """interface -> node name, for the ports a node is enrolled on."""
        with self.world.db.session() as s:
            rows = s.execute(
                select(SwitchPort.interface, Node.name)
                .join(Nic, Nic.port_id == SwitchPort.id)
                .join(Node, Node.id == Nic.node_id)
            ).all()
            return {interface: node for interface, node in rows}

    def desired(self) -> dict[str, int | None]:
        """interface -> the VLAN the database wants it in (parked when unbound)."""
        with self.world.db.session() as s:
            ports = s.scalars(select(SwitchPort))
            return {p.interface: desired_vlan(p, self.settings) for p in ports}

    def owners(self) -> dict[str, guard.Owner]:
        """interface -> its owner, read as the guard reads it."""
        with self.world.db.session() as s:
            ports = list(s.scalars(select(SwitchPort)))
            by_id = guard.owners(s, ports)
            return {p.interface: by_id.get(p.id, guard.Owner()) for p in ports}

    def fingerprint(self) -> tuple[object, ...]:
        """What any write to the database would change: desired VLANs, audit, change log."""
        with self.world.db.session() as s:
            audit = s.scalar(select(func.count()).select_from(AuditEntry))
            changes = s.scalar(select(func.count()).select_from(SwitchChange))
        return (tuple(sorted(self.desired().items())), audit, changes)

    def busy(self) -> list[str]:
        """Every lifecycle in progress: instances by state and step (and those a worker
        still holds: a failed spawn is in error while it takes its port back and powers
        its node off), nodes by state."""
        with self.world.db.session() as s:
            rows = s.execute(
                select(Instance.name, Instance.state, Instance.step, Instance.lease_owner)
                .where(or_(Instance.state.in_(BUSY_INSTANCE), Instance.lease_owner.is_not(None)))
                .order_by(Instance.id)
            ).all()
        instances = [
            f"{name} {state} at {step}" + (f" (held by {worker})" if worker else "")
            for name, state, step, worker in rows
        ]
        nodes = [f"{n} {s}" for n, s in self.node_states().items() if s in BUSY_NODE]
        return instances + nodes

    def settle(self) -> None:
        """Wait until no lifecycle is in progress, at most as long as a spawn interrupted
        at its last step and the terminate that follows take with every step at its
        timeout (each step is bounded by the step timeout; a BMC call by a shorter one)."""
        seconds = (len(SPAWN.steps) + len(TERMINATE.steps)) * self.settings.step_timeout
        until(
            seconds,
            "the lifecycle to settle",
            lambda: not self.busy(),
            lambda: f"still in progress: {'; '.join(self.busy())}",
        )

    # The invariants ------------------------------------------------------------------

    def isolation_violations(self) -> list[str]:
        """The isolation invariant on the switch's committed state, read over NETCONF,
        and on what the nodes run, seen on the simulators (`tenant_os_violation`).

        The database and the nodes are read before and after the device; a violation
        counts only if the port's owner did not change meanwhile (the lifecycle records
        a step before it moves a port, so a read racing a step could otherwise look like
        a leak), an instance's plan counts as running if a worker held it before or after
        (a failed spawn takes its port back after it recorded the error), and a node
        counts as running a tenant's OS only if it ran it throughout (terminate powers
        the node off, then moves its port).
        """
        before, ran, held = self.owners(), self.seen(), self.running_plans()
        actual = self.reader.read_ports(SWITCH, self.interfaces())
        bound = self.bound()
        after, still, held = self.owners(), self.seen(), held | self.running_plans()
        tenant_os = {
            node.interface: node.name
            for node in self.world.lab.nodes
            if ran[node.name] == still[node.name] and still[node.name].tenant_os
        }
        problems = []
        with self.world.db.session() as s:
            project_vlans = set(s.scalars(select(Network.vlan)))
            for interface, state in actual.items():
                if before.get(interface) != after.get(interface):
                    continue  # judged at the next step, when it holds still
                owner = after.get(interface, guard.Owner())
                if (node := tenant_os.get(interface)) and (
                    problem := tenant_os_violation(node, state, owner)
                ):
                    problems.append(f"{interface}: {problem}")
                if node := bound.get(interface):
                    running = (owner.project, owner.instance) in held
                    if problem := state_violation(s, node, state, owner, running):
                        problems.append(f"{interface}: {problem}")
                elif (leaked := _carried(state) & project_vlans) and state.enabled:
                    problems.append(
                        f"{interface}: unbound port carries project VLAN "
                        f"{sorted(leaked)} ({describe(state)}), "
                        f"{guard.allowed(guard.Owner(), self.settings).rule}"
                    )
        return problems

    def running_plans(self) -> set[tuple[str, str]]:
        """(project, instance) of every instance a worker holds (runs its plan) now."""
        with self.world.db.session() as s:
            rows = s.execute(
                select(Project.name, Instance.name)
                .join(Instance.project)
                .where(Instance.lease_owner.is_not(None))
            )
            return {(project, name) for project, name in rows}

    def seen(self) -> dict[str, Seen]:
        """node name -> what it runs now, on the simulators (not in the database)."""
        return {node.name: node.seen() for node in self.world.lab.nodes}

    def node_state_violations(self) -> list[str]:
        """Nodes whose state their instance's state does not allow (`NODE_STATES`)."""
        with self.world.db.session() as s:
            return node_state_violations(s)

    def unerased_offers(self) -> list[str]:
        """Nodes `available` whose disk is not all zero (read before and after the disk)."""
        before = self.node_states()
        dirty = {
            n.name
            for n in self.world.lab.nodes
            if before.get(n.name) == "available" and n.disk.exists()
            if not self.world.lab.disk_is_zero(n)
        }
        after = self.node_states()
        return [
            f"node {name} is available with a disk that was never erased"
            for name in sorted(dirty)
            if after.get(name) == "available"
        ]

    def desired_outside_rule(self) -> list[str]:
        """Ports whose desired VLAN the guard would refuse for their owner right now."""
        owners, desired = self.owners(), self.desired()
        problems = []
        for interface, vlan in desired.items():
            rule = self.guard_rule(owners[interface])
            if vlan is not None and vlan not in rule.vlans:
                problems.append(
                    f"{interface} desired VLAN {vlan} ({owners[interface]}): {rule.rule}"
                )
        return problems

    def guard_rule(self, owner: guard.Owner | None) -> guard.Allowed:
        """The VLANs the guard admits for `owner` now (an unknown port: unbound)."""
        return guard.allowed(owner or guard.Owner(), self.settings)

    def enrol(self, name: str) -> CliResult:
        """`metalnet node add` for a lab node, with its own MAC, port and BMC."""
        node = self.node(name)
        return self.admin(
            "node", "add", name, "--mac", node.mac, "--switch", SWITCH, "--port",
            node.interface, "--bmc", node.bmc.url, "--bmc-username", BMC_USER,
            "--bmc-password-env", "MODEL_BMC_PASSWORD",
        )  # fmt: skip


_CLI_ENV = {"METALNET_CONFIG": None, "METALNET_URL": None, "MODEL_BMC_PASSWORD": BMC_PASSWORD}


def _carried(state) -> set[int]:
    native = {state.native_vlan} if state.native_vlan is not None else set()
    return set(state.vlans) | native
