"""The lifecycle engine: runs the plans of `lifecycle.states` as durable, resumable steps.

Each step is recorded in the database *before* it acts, and every step is idempotent,
so a controller killed at any moment resumes by re-running the recorded step. Steps
are dispatched through one table keyed by step name; the plans themselves are data
(`states.SPAWN`, `states.TERMINATE`).

Three rules hold whatever the timing:
- a terminate requested at any moment of a spawn ends in a full terminate: the state
  is only ever changed by compare-and-set on the state the plan runs for, a step that
  waits on the agent gives up as soon as the plan changed, and the engine then runs
  the new plan at once;
- the ramdisk's token, boot entry and open agent task end with the step that waits on
  the agent, however it ends (done, failed, timed out, interrupted);
- a node that may run a tenant's OS (leaving its project VLAN, or a failed spawn whose
  port may have reached it) is powered off before its port goes back to the service
  VLAN enabled; when the power-off fails, the port goes there *disabled*, so a
  tenant's image never runs on the provisioning network, nor anywhere else.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError

from metalnet import inventory, metrics
from metalnet.db.engine import Database
from metalnet.db.models import AgentTask, Instance, InstanceEvent, Node
from metalnet.lifecycle import quarantine, tokens
from metalnet.lifecycle.states import (
    NODE_PLANS,
    OPEN_TASK,
    PLANS,
    SPAWN,
    InstanceState,
    NodeState,
    Plan,
    Step,
    TaskState,
)
from metalnet.power import (
    BmcTarget,
    BmcUnreachable,
    BootDevice,
    PowerDriver,
    PowerError,
    PowerState,
    driver_for,
)
from metalnet.power.base import display_url
from metalnet.retry import Retry
from metalnet.switches import drift, guard
from metalnet.switches.base import SwitchError
from metalnet.switches.service import SwitchService

log = logging.getLogger(__name__)

POWER_OFF_RETRY = Retry(attempts=3, first=1.0, cap=4.0)
"""A terminate's power-off, before its port leaves the project VLAN: three tries, so a
hiccup is ridden out and a BMC that is down fails the step within three BMC timeouts."""


class StepFailed(Exception):
    """A step could not complete; the message says why."""


class Interrupted(Exception):
    """The instance's plan changed while a step waited (a terminate arrived)."""


@dataclass(frozen=True)
class Job:
    """What the steps of one plan need, read once per plan from the database.

    An instance's plan has its `instance_id`; a node's own plan (the erase of a newly
    enrolled node) has None there and is recorded on the node instead.
    """

    instance_id: int | None
    instance: str
    state: str
    node_id: int
    node: str
    mac: str
    bmc: BmcTarget
    project_vlan: int
    image_url: str
    sha256: str

    @property
    def table(self) -> type[Instance] | type[Node]:
        """Where this plan's state and lease live."""
        return Node if self.instance_id is None else Instance

    @property
    def subject_id(self) -> int:
        return self.node_id if self.instance_id is None else self.instance_id


StepHook = Callable[[Job, str], None]
"""Called with the job and the step name; tests and the demo observe steps with it."""


def worker_name() -> str:
    """Who runs lifecycles in this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _node_job(node: Node, instance_id: int | None = None, instance: str = "", state: str = ""):
    """A job for `node`: its own plan's, or the base of an instance's (see Engine._job)."""
    return Job(
        instance_id=instance_id,
        instance=instance,
        state=state or node.state,
        node_id=node.id,
        node=node.name,
        mac=node.nics[0].mac,
        bmc=BmcTarget(node.name, node.bmc_url, node.bmc_username or "", node.bmc_password or ""),
        project_vlan=0,
        image_url="",
        sha256="",
    )


def _may_run_tenant(step: Step) -> bool:
    """Whether a spawn that failed at `step` may have booted the tenant's image: its
    port may have reached the project VLAN."""
    return SPAWN.steps.index(step) >= SPAWN.steps.index(Step.PORT_TO_PROJECT)


def power_for(bmc: BmcTarget, timeout: float) -> PowerDriver:
    """The node's BMC driver (a function so tests and the lab can substitute it)."""
    return driver_for(bmc, timeout=timeout)


class Engine:
    """Runs the remaining steps of one instance at a time; safe to call again after a crash.

    `on_start(job, step)` is called once a step is recorded and before it acts;
    `on_step(job, step)` once it is done.
    """

    def __init__(
        self,
        db: Database,
        switching: SwitchService,
        on_step: StepHook | None = None,
        power: Callable[[BmcTarget, float], PowerDriver] = power_for,
        worker: str | None = None,
        on_start: StepHook | None = None,
    ) -> None:
        self.db = db
        self.settings = db.settings
        self.switching = switching
        self.on_step = on_step
        self.on_start = on_start
        self.power = power
        self.worker = worker or worker_name()
        self.actions: dict[Step, Callable[[Job, Plan], None]] = {
            Step.PORT_TO_SERVICE: self._port_to_service,
            Step.PXE_BOOT: self._pxe_boot,
            Step.DEPLOY: self._deploy,
            Step.ERASE: self._erase,
            Step.POWER_OFF: self._power_off,
            Step.DISK_BOOT: self._disk_boot,
            Step.PORT_TO_PROJECT: self._port_to_project,
            Step.POWER_ON: self._power_on,
            Step.RELEASE: self._release,
        }

    # Bookkeeping ---------------------------------------------------------------

    def _job(self, instance_id: int) -> tuple[Job, str]:
        """The instance's job and the step recorded for it."""
        with self.db.session() as session:
            inst = session.get(Instance, instance_id)
            job = _node_job(inst.node, instance_id=inst.id, instance=inst.name, state=inst.state)
            job = dataclasses.replace(
                job,
                project_vlan=inst.network.vlan,
                image_url=inst.image_url,
                sha256=inst.sha256,
            )
            return job, inst.step

    def _mine(self, job: Job):
        """The WHERE clause of every state change: still this plan, and our lease."""
        table = job.table
        return (
            table.id == job.subject_id,
            table.state == job.state,
            or_(table.lease_owner.is_(None), table.lease_owner == self.worker),
        )

    def _begin(self, job: Job, step: Step) -> bool:
        """Record the step before acting; False when the plan changed or the lease was lost.

        An instance records the step and its history; a node shows it in its state reason.
        """
        with self.db.session() as session:
            if job.instance_id is None:
                values = {"state_reason": f"erase before first use: {step}"}
            else:
                values = {"step": step}
            moved = session.execute(update(job.table).where(*self._mine(job)).values(**values))
            if moved.rowcount != 1:
                return False
        self._event(job, step, "started")
        return True

    def _event(self, job: Job, step: str, message: str, seconds: float | None = None) -> None:
        log.info("instance %s node %s: %s %s", job.instance or "-", job.node, step, message)
        if job.instance_id is None:
            return
        with self.db.session() as session:
            session.add(
                InstanceEvent(
                    instance_id=job.instance_id,
                    step=step,
                    message=message,
                    seconds=seconds,
                    worker=self.worker,
                )
            )

    def _plan_changed(self, job: Job) -> bool:
        with self.db.session() as session:
            state = session.scalar(select(job.table.state).where(job.table.id == job.subject_id))
            return state != job.state

    # Running ---------------------------------------------------------------------

    def run(self, instance_id: int) -> str:
        """Carry the instance through its plans until none is left; returns its final state.

        A terminate recorded during a spawn changes the instance's state; the spawn's
        next state change then fails its compare-and-set and the terminate plan runs.
        """
        while True:
            job, recorded = self._job(instance_id)
            plan = PLANS.get(job.state)
            if plan is None or not self._run_plan(job, plan, recorded):
                return self._job(instance_id)[0].state

    def run_node(self, node_id: int) -> str:
        """Carry a node through its own plan (a newly enrolled node's erase); its state.

        The plan restarts from its first step after a crash: every step is idempotent.
        """
        with self.db.session() as session:
            job = _node_job(session.get(Node, node_id))
        plan = NODE_PLANS.get(job.state)
        if plan is not None:
            self._run_plan(job, plan, Step.QUEUED)
        with self.db.session() as session:
            return session.get(Node, node_id).state

    def _run_plan(self, job: Job, plan: Plan, recorded: str) -> bool:
        """Run the plan's remaining steps; True when another plan may be due now."""
        for step in plan.after(recorded):
            if not self._begin(job, step):
                if not self._plan_changed(job):
                    return False  # the lease is lost: its new holder goes on
                self._end_ramdisk(job)
                return True
            if self.on_start is not None:
                self.on_start(job, step)
            started = time.monotonic()
            try:
                self.actions[step](job, plan)
            except DBAPIError:
                raise  # the database, not the step, failed: the worker resumes the step later
            except Interrupted:
                self._event(job, step, "interrupted: terminate requested")
                self._end_ramdisk(job)
                return True
            except Exception as exc:
                log.warning("instance %s node %s: %s failed: %s", job.instance, job.node, step, exc)
                self._fail(job, plan, step, exc)
                return True
            self._event(job, step, "done", time.monotonic() - started)
            if self.on_step is not None:
                self.on_step(job, step)
        self._finish(job, plan)
        return True

    def _finish(self, job: Job, plan: Plan) -> None:
        """The plan's end state, unless another plan was requested meanwhile."""
        if job.instance_id is None:
            with self.db.session() as session:
                session.execute(
                    update(Node)
                    .where(*self._mine(job))
                    .values(state=plan.done, state_reason=None, lease_owner=None)
                )
            return
        with self.db.session() as session:
            done = session.execute(
                update(Instance).where(*self._mine(job)).values(state=plan.done, step=plan.done)
            )
            if done.rowcount != 1:
                return
            inst = session.get(Instance, job.instance_id)
            if plan is SPAWN:
                inst.node.state = NodeState.ACTIVE
            session.add(InstanceEvent(instance_id=inst.id, step=plan.done, message=plan.done))

    def _fail(self, job: Job, plan: Plan, step: Step, exc: Exception) -> None:
        """Record why, then make the node safe: never in a project VLAN unless active.

        Instance and node both end in ERROR, the node's reason naming the step (a node
        left DEPLOYING by a failed terminate would look busy forever); deleting the
        instance again runs its terminate from the start. A terminate that arrived
        meanwhile keeps the instance: its own plan erases.
        """
        message = f"step {step} failed: {exc}"
        metrics.STEP_FAILURES.labels(step).inc()
        if job.instance_id is None:
            if not self._plan_changed(job):  # an erase that failed has quarantined it already
                self._quarantine(job, f"erase before first use failed: {message}")
                self._end_ramdisk(job)
            return
        with self.db.session() as session:
            if plan is SPAWN:  # its port is taken back below, and ports lock before instances
                port = inventory.node_port(session.get(Node, job.node_id))
                guard.lock_ports(session, [port.id])
            session.add(InstanceEvent(instance_id=job.instance_id, step=step, message=message))
            failed = (
                session.execute(
                    update(Instance)
                    .where(*self._mine(job))
                    .values(state=InstanceState.ERROR, error=message)
                ).rowcount
                == 1
            )
            inst = session.get(Instance, job.instance_id)
            if failed and plan is SPAWN:  # enabled again only once the node is off
                port = inventory.node_port(inst.node)
                port.desired_vlan = self.settings.service_vlan
                port.desired_enabled = not _may_run_tenant(step)
            if failed and inst.node.state == NodeState.QUARANTINED:
                inst.state = InstanceState.DELETED  # the tenant's instance is gone; node held
            elif failed:  # whichever plan failed: the node is not deploying nor serving
                node = inst.node
                node.state, node.state_reason = NodeState.ERROR, f"{job.instance}: {message}"
        if failed or self._plan_changed(job):  # else the lease is lost: its holder goes on
            self._end_ramdisk(job)
        if failed and plan is SPAWN:
            self._safe_after_failed_spawn(job, step)

    def _safe_after_failed_spawn(self, job: Job, step: Step) -> None:
        """Make the node safe after a failed spawn, as `_fail` wants its port.

        A port that may have left the service VLAN is taken out of the project VLAN at
        once, disabled (the node may run the tenant's OS; the instance is no longer
        building, so the port may not stay there while the BMC is asked); then the node
        is powered off, and only once it is off is the port enabled.
        """
        may_run_tenant = _may_run_tenant(step)
        if may_run_tenant:
            self._take_back(job, enabled=False)
        failure = self._try_power_off(job)
        if not may_run_tenant:
            if failure is not None:
                log.error("node %s: spawn failed, could not power off: %s", job.node, failure)
            return
        if failure is None:
            self._take_back(job, enabled=True)
            return
        note = self._port_disabled(job, failure)
        self._event(job, Step.POWER_OFF, note)
        with self.db.session() as session:
            node = session.get(Node, job.node_id)
            if node.state == NodeState.ERROR:
                node.state_reason = f"{node.state_reason}; {note}"

    def _take_back(self, job: Job, enabled: bool) -> None:
        """The failed spawn's port to the service VLAN, retried as a terminate's move is;
        a switch that still fails is logged (the desired state is recorded: the
        reconciler finishes the move)."""
        try:
            self._move(job, self.settings.service_vlan, enabled=enabled)
        except Exception as undo:
            log.error("node %s: could not return port to the service VLAN: %s", job.node, undo)

    # Ports -------------------------------------------------------------------------

    def _move(self, job: Job, vlan: int, enabled: bool = True) -> None:
        """Move the node's port, retrying a switch that fails until the step times out.

        A terminate must not give up on taking a tenant's port back because a switch
        hiccupped; the desired state is already recorded, so every retry is the same change.
        """
        Retry(seconds=self.settings.step_timeout, first=1.0, cap=30.0).call(
            lambda: self.switching.move_node(job.node, vlan, enabled=enabled),
            retry_on=(SwitchError,),
            what=f"node {job.node}: port move to {drift.desired_text(vlan, enabled)}",
        )

    def _port_to_service(self, job: Job, plan: Plan) -> None:
        """Power the node off, then take its port to the service VLAN.

        A node leaving its project may still run the tenant's OS, which must never sit
        on the service VLAN (it would be served a service address there and reach the
        agent endpoint): Ironic's tear-down likewise powers off before it unconfigures
        the tenant networks (ironic/drivers/modules/ansible/deploy.py, `tear_down`).
        A BMC that does not answer is asked again (`POWER_OFF_RETRY`: BMCs hiccup);
        when it still fails (or refuses the credentials), the port still leaves the
        project VLAN (it is there only while the instance is active) but *disabled*:
        the tenant's OS, still running, reaches neither the service network nor anyone
        else (a shared parking VLAN would let two such nodes meet). The step fails; a
        delete once the BMC answers runs this step again and enables the port.
        A spawn starts from a free node, which the plan that freed it left powered off.
        """
        failure = None if plan is SPAWN else self._try_power_off(job)
        self._move(job, self.settings.service_vlan, enabled=failure is None)
        if failure is not None:
            raise StepFailed(self._port_disabled(job, failure)) from failure

    def _port_disabled(self, job: Job, failure: Exception) -> str:
        """Say, in the log and to the caller, that the node's port is disabled because its
        BMC did not power it off: which BMC, which switch port, what to do."""
        with self.db.session() as session:
            port = inventory.node_port(inventory.get_node(session, job.node))
            switch, interface = port.switch.name, port.interface
        reason = failure.reason if isinstance(failure, PowerError) else str(failure)
        note = (
            f"node {job.node}: could not power off through BMC {display_url(job.bmc.url)} "
            f"({reason}); port {switch} {interface} is disabled in the service VLAN "
            "until a delete powers the node off"
        )
        log.error("%s", note)
        return note

    def _try_power_off(self, job: Job) -> Exception | None:
        """The BMC's error if the power-off failed (asked `POWER_OFF_RETRY` times), for
        the caller to act on after the port's move."""

        def power_off() -> None:
            with self.power(job.bmc, self.settings.bmc_timeout) as bmc:
                bmc.power_off()

        try:
            POWER_OFF_RETRY.call(
                power_off, retry_on=(BmcUnreachable,), what=f"node {job.node}: power off"
            )
        except Exception as exc:  # whatever the BMC driver raised, the node may still run
            return exc
        return None

    def _port_to_project(self, job: Job, plan: Plan) -> None:
        """Move the port, then read it back from the switch: the tenant's image is only
        powered on when the device itself says the port is in the project VLAN."""
        self._move(job, job.project_vlan)
        with self.db.session() as session:
            port = inventory.node_port(inventory.get_node(session, job.node))
            switch, interface = port.switch.name, port.interface
        actual = self.switching.read_ports(switch, [interface]).get(interface)
        if not drift.in_sync(job.project_vlan, actual):
            raise StepFailed(
                f"port {switch} {interface} reads back as {drift.describe(actual)}, "
                f"not VLAN {job.project_vlan}"
            )

    # Power ---------------------------------------------------------------------------

    def _pxe_boot(self, job: Job, plan: Plan) -> None:
        """Queue the agent's task and boot the node into the ramdisk.

        The boot server gives the node its script (and a fresh token) only while the
        task is open: see metalnet.lifecycle.boot.
        """
        kind = plan.agent_task
        if kind == "deploy":
            self.settings.image_policy.check(job.image_url)  # the policy may have changed
        with self.db.session() as session:
            node = session.scalar(select(Node).where(Node.name == job.node))
            tokens.revoke(node)  # a token from an earlier boot never opens this one
            self._close_tasks(session, node, keep=(job.instance_id, kind))
            if self._open_task(session, job, kind) is None:
                session.add(
                    AgentTask(
                        node_id=node.id,
                        instance_id=job.instance_id,
                        kind=kind,
                        image_url=job.image_url if kind == "deploy" else None,
                        sha256=job.sha256 if kind == "deploy" else None,
                    )
                )
        with self.power(job.bmc, self.settings.bmc_timeout) as bmc:
            bmc.set_boot_device(BootDevice.PXE)
            if bmc.power_state() == PowerState.ON:
                bmc.reboot()
            else:
                bmc.power_on()

    def _power_off(self, job: Job, plan: Plan) -> None:
        with self.power(job.bmc, self.settings.bmc_timeout) as bmc:
            bmc.power_off()

    def _disk_boot(self, job: Job, plan: Plan) -> None:
        """The node is off: make its disk the boot device for when it is powered on."""
        with self.power(job.bmc, self.settings.bmc_timeout) as bmc:
            bmc.set_boot_device(BootDevice.DISK, persistent=True)

    def _power_on(self, job: Job, plan: Plan) -> None:
        with self.power(job.bmc, self.settings.bmc_timeout) as bmc:
            bmc.power_on()

    # The agent's work ------------------------------------------------------------------

    def _deploy(self, job: Job, plan: Plan) -> None:
        task = self._await_agent(job, plan)
        if task.state != TaskState.DONE:
            raise StepFailed(f"agent on node {job.node} reported: {task.message}")

    def _erase(self, job: Job, plan: Plan) -> None:
        task = self._await_agent(job, plan)
        if task.state != TaskState.DONE:
            self._quarantine(job, f"erase failed: {task.message}")
            raise StepFailed(f"node {job.node} quarantined, erase failed: {task.message}")

    def _await_agent(self, job: Job, plan: Plan) -> AgentTask:
        """Wait for the agent's report; the ramdisk ends with this step however it ends."""
        try:
            return self._wait_task(job, plan.agent_task)
        finally:
            self._end_ramdisk(job)

    @staticmethod
    def _open_task(session, job: Job, kind: str) -> AgentTask | None:
        return session.scalar(
            select(AgentTask).where(
                AgentTask.node_id == job.node_id,
                AgentTask.instance_id == job.instance_id,
                AgentTask.kind == kind,
                AgentTask.state.in_(OPEN_TASK),
            )
        )

    @staticmethod
    def _close_tasks(session, node: Node, keep: tuple[int, str] | None = None) -> None:
        """Cancel the node's open tasks (but `keep`, an (instance, kind) still wanted)."""
        for task in session.scalars(
            select(AgentTask).where(AgentTask.node_id == node.id, AgentTask.state.in_(OPEN_TASK))
        ):
            if (task.instance_id, task.kind) != keep:
                task.state, task.finished_at = TaskState.CANCELLED, datetime.now(UTC)

    def _wait_task(self, job: Job, kind: str) -> AgentTask:
        """Wait for the agent's report on the newest `kind` task of this instance."""
        deadline = time.monotonic() + self.settings.step_timeout
        while True:
            with self.db.session() as session:
                if session.get(job.table, job.subject_id).state != job.state:
                    raise Interrupted()
                task = session.scalar(
                    select(AgentTask)
                    .where(
                        AgentTask.node_id == job.node_id,
                        AgentTask.instance_id == job.instance_id,
                        AgentTask.kind == kind,
                    )
                    .order_by(AgentTask.id.desc())
                )
                if task is None:
                    raise StepFailed(f"no {kind} task was queued for node {job.node}")
                if task.state not in OPEN_TASK:
                    session.expunge(task)
                    return task
                progress = f"{task.phase or 'waiting'} {task.done_bytes}/{task.total_bytes} bytes"
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"agent on node {job.node} did not finish {kind} within "
                    f"{self.settings.step_timeout:.0f}s (last progress: {progress})"
                )
            time.sleep(self.settings.poll_interval / 2)

    def _end_ramdisk(self, job: Job) -> None:
        """The token dies and open tasks are cancelled (a closed task ends boot entries)."""
        with self.db.session() as session:
            node = session.scalar(select(Node).where(Node.name == job.node))
            tokens.revoke(node)
            self._close_tasks(session, node)

    # Terminate's end -----------------------------------------------------------------

    def _release(self, job: Job, plan: Plan) -> None:
        with self.db.session() as session:
            inst = session.get(Instance, job.instance_id)
            inst.holds_node_id = None
            if inst.node.state != NodeState.QUARANTINED:
                inst.node.state, inst.node.state_reason = NodeState.AVAILABLE, None

    def _quarantine(self, job: Job, reason: str) -> None:
        """Never hand the node out again until `metalnet node clear`, even if it is deleted
        and enrolled again (remembered by MAC and BMC); power it off."""
        with self.db.session() as session:
            node = session.get(Node, job.node_id)
            quarantine.mark(session, node, reason)
            if job.instance_id is not None:
                session.get(Instance, job.instance_id).holds_node_id = None
            node.lease_owner = None
        try:
            with self.power(job.bmc, self.settings.bmc_timeout) as bmc:
                bmc.power_off()
        except Exception as exc:
            log.error("node %s: quarantined but could not power off: %s", job.node, exc)
