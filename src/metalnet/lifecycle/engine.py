"""The lifecycle engine: spawn and terminate as ordered, durable, resumable steps.

Each step is recorded in the database *before* it acts, and every step is idempotent,
so a controller killed at any moment resumes by re-running the recorded step. The
order is the safety argument (see DESIGN.md, "The lifecycle"):

spawn:     port_to_service -> pxe_boot -> deploy -> disk_boot -> port_to_project
terminate: port_to_service -> pxe_boot -> erase -> power_off -> release

The port is in the service VLAN before the node powers on into the ramdisk, reaches
the project VLAN only after the node rebooted from its disk, and goes back to the
service VLAN before anything else happens on terminate. A failed erase quarantines
the node. A failed spawn step leaves the port in the service VLAN.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from metalnet import inventory, metrics
from metalnet.db.engine import Database
from metalnet.db.models import AgentTask, Instance, InstanceEvent, Node
from metalnet.lifecycle import tokens
from metalnet.power import BmcTarget, BootDevice, PowerDriver, PowerState, driver_for
from metalnet.switches.base import SwitchError
from metalnet.switches.service import SwitchService

log = logging.getLogger(__name__)

SPAWN = ("port_to_service", "pxe_boot", "deploy", "disk_boot", "port_to_project")
TERMINATE = ("port_to_service", "pxe_boot", "erase", "power_off", "release")
PLANS = {"building": SPAWN, "deleting": TERMINATE}


class StepFailed(Exception):
    """A step could not complete; the message says why."""


@dataclass(frozen=True)
class Job:
    """What the steps of one instance need, read once per step from the database."""

    instance_id: int
    instance: str
    state: str
    node: str
    mac: str
    bmc: BmcTarget
    project_vlan: int
    image_url: str
    sha256: str


StepHook = Callable[[Job, str], None]


def worker_name() -> str:
    """Who runs lifecycles in this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def power_for(bmc: BmcTarget, timeout: float) -> PowerDriver:
    """The node's BMC driver (a function so tests and the lab can substitute it)."""
    return driver_for(bmc, timeout=timeout)


class Engine:
    """Runs the remaining steps of one instance at a time; safe to call again after a crash."""

    def __init__(
        self,
        db: Database,
        switching: SwitchService,
        on_step: StepHook | None = None,
        power: Callable[[BmcTarget, float], PowerDriver] = power_for,
        worker: str | None = None,
    ) -> None:
        self.db = db
        self.settings = db.settings
        self.switching = switching
        self.on_step = on_step
        self.power = power
        self.worker = worker or worker_name()

    # Bookkeeping ---------------------------------------------------------------

    def _job(self, instance_id: int) -> Job:
        with self.db.session() as session:
            inst = session.get(Instance, instance_id)
            node = inst.node
            return Job(
                instance_id=inst.id,
                instance=inst.name,
                state=inst.state,
                node=node.name,
                mac=node.nics[0].mac,
                bmc=BmcTarget(
                    node.name, node.bmc_url, node.bmc_username or "", node.bmc_password or ""
                ),
                project_vlan=inst.network.vlan,
                image_url=inst.image_url,
                sha256=inst.sha256,
            )

    def _begin(self, job: Job, step: str) -> bool:
        """Record the step before acting; False when the plan changed or the lease was lost."""
        with self.db.session() as session:
            inst = session.get(Instance, job.instance_id, with_for_update=True)
            if inst.state != job.state or inst.lease_owner not in (None, self.worker):
                return False
            if inst.step != step:
                inst.step = step
            session.add(
                InstanceEvent(instance_id=inst.id, step=step, message="started", worker=self.worker)
            )
        log.info("instance %s node %s: %s started", job.instance, job.node, step)
        return True

    def _event(self, job: Job, step: str, message: str, seconds: float | None = None) -> None:
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

    # Running ---------------------------------------------------------------------

    def run(self, instance_id: int) -> str:
        """Carry the instance through its remaining steps; returns its final state."""
        job = self._job(instance_id)
        plan = PLANS.get(job.state)
        if plan is None:
            return job.state
        with self.db.session() as session:
            current = session.get(Instance, instance_id).step
        start = plan.index(current) if current in plan else 0
        for step in plan[start:]:
            if not self._begin(job, step):
                return self._job(instance_id).state
            started = time.monotonic()
            try:
                getattr(self, f"_{'spawn' if plan is SPAWN else 'terminate'}_{step}")(job)
            except DBAPIError:
                raise  # the database, not the step, failed: the worker resumes the step later
            except Exception as exc:
                log.warning("instance %s node %s: %s failed: %s", job.instance, job.node, step, exc)
                self._fail(job, step, exc)
                return "error"
            seconds = time.monotonic() - started
            self._event(job, step, "done", seconds)
            log.info("instance %s node %s: %s done in %.2fs", job.instance, job.node, step, seconds)
            if self.on_step is not None:
                self.on_step(job, step)
        return self._finish(job)

    def _finish(self, job: Job) -> str:
        with self.db.session() as session:
            inst = session.get(Instance, job.instance_id)
            if inst.state == "building":
                inst.state, inst.step = "active", "active"
                inst.node.state = "active"
            elif inst.state == "deleting":
                inst.state, inst.step = "deleted", "deleted"
            session.add(InstanceEvent(instance_id=inst.id, step=inst.step, message=inst.state))
            return inst.state

    def _fail(self, job: Job, step: str, exc: Exception) -> None:
        """Record why, then make the node safe: never in a project VLAN unless active."""
        message = f"step {step} failed: {exc}"
        metrics.STEP_FAILURES.labels(step).inc()
        with self.db.session() as session:
            inst = session.get(Instance, job.instance_id)
            inst.state, inst.error = "error", message
            session.add(InstanceEvent(instance_id=inst.id, step=step, message=message))
            if job.state == "building":
                inventory.node_port(inst.node).desired_vlan = self.settings.service_vlan
                inst.node.state = "error"
            elif inst.node.state == "quarantined":
                inst.state = "deleted"  # the tenant's instance is gone; the node is held back
        if job.state == "building" and step == "port_to_project":
            try:
                self.switching.move_node(job.node, self.settings.service_vlan)
            except Exception as undo:
                log.error("node %s: could not return port to the service VLAN: %s", job.node, undo)

    # Steps shared by both plans -----------------------------------------------------

    def _move(self, job: Job, vlan: int) -> None:
        """Move the node's port, retrying a switch that fails until the step times out.

        A terminate must not give up on taking a tenant's port back because a switch
        hiccupped; the desired VLAN is already recorded, so every retry is the same change.
        """
        deadline = time.monotonic() + self.settings.step_timeout
        delay = 1.0
        while True:
            try:
                self.switching.move_node(job.node, vlan)
                return
            except SwitchError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "node %s: port move to VLAN %d failed, retrying in %.0fs: %s",
                    job.node,
                    vlan,
                    delay,
                    exc,
                )
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _port_to_service(self, job: Job) -> None:
        self._move(job, self.settings.service_vlan)

    def _pxe_boot(self, job: Job, kind: str) -> None:
        """Queue the agent's task and boot the node into the ramdisk.

        The boot server gives the node its script (and a fresh token) only while the
        task is open: see metalnet.lifecycle.boot.
        """
        with self.db.session() as session:
            node = session.scalar(select(Node).where(Node.name == job.node))
            tokens.revoke(node)  # a token from an earlier boot never opens this one
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

    @staticmethod
    def _open_task(session, job: Job, kind: str) -> AgentTask | None:
        return session.scalar(
            select(AgentTask).where(
                AgentTask.instance_id == job.instance_id,
                AgentTask.kind == kind,
                AgentTask.state.in_(("pending", "running")),
            )
        )

    def _wait_task(self, job: Job, kind: str) -> AgentTask:
        """Wait for the agent's report on the newest `kind` task of this instance."""
        deadline = time.monotonic() + self.settings.step_timeout
        while True:
            with self.db.session() as session:
                task = session.scalar(
                    select(AgentTask)
                    .where(AgentTask.instance_id == job.instance_id, AgentTask.kind == kind)
                    .order_by(AgentTask.id.desc())
                )
                if task is None:
                    raise StepFailed(f"no {kind} task was queued for node {job.node}")
                if task.state in ("done", "failed"):
                    return task
                progress = f"{task.phase or 'waiting'} {task.done_bytes}/{task.total_bytes} bytes"
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"agent on node {job.node} did not finish {kind} within "
                    f"{self.settings.step_timeout:.0f}s (last progress: {progress})"
                )
            time.sleep(self.settings.poll_interval / 2)

    def _end_ramdisk(self, job: Job) -> None:
        """The token dies once the agent's work is over (the closed task ends boot entries)."""
        with self.db.session() as session:
            tokens.revoke(session.scalar(select(Node).where(Node.name == job.node)))

    # Spawn -------------------------------------------------------------------------

    def _spawn_port_to_service(self, job: Job) -> None:
        self._port_to_service(job)

    def _spawn_pxe_boot(self, job: Job) -> None:
        self._pxe_boot(job, "deploy")

    def _spawn_deploy(self, job: Job) -> None:
        task = self._wait_task(job, "deploy")
        if task.state != "done":
            raise StepFailed(f"agent on node {job.node} reported: {task.message}")

    def _spawn_disk_boot(self, job: Job) -> None:
        self._end_ramdisk(job)
        with self.power(job.bmc, self.settings.bmc_timeout) as bmc:
            bmc.set_boot_device(BootDevice.DISK, persistent=True)
            bmc.reboot()

    def _spawn_port_to_project(self, job: Job) -> None:
        self._move(job, job.project_vlan)

    # Terminate -----------------------------------------------------------------------

    def _terminate_port_to_service(self, job: Job) -> None:
        self._port_to_service(job)

    def _terminate_pxe_boot(self, job: Job) -> None:
        self._pxe_boot(job, "erase")

    def _terminate_erase(self, job: Job) -> None:
        task = self._wait_task(job, "erase")
        if task.state != "done":
            self._quarantine(job, f"erase failed: {task.message}")
            raise StepFailed(f"node {job.node} quarantined, erase failed: {task.message}")

    def _terminate_power_off(self, job: Job) -> None:
        self._end_ramdisk(job)
        with self.power(job.bmc, self.settings.bmc_timeout) as bmc:
            bmc.power_off()

    def _terminate_release(self, job: Job) -> None:
        with self.db.session() as session:
            inst = session.get(Instance, job.instance_id)
            inst.holds_node_id = None
            if inst.node.state != "quarantined":
                inst.node.state = "available"

    def _quarantine(self, job: Job, reason: str) -> None:
        """Never hand the node out again until `metalnet node clear`; power it off."""
        with self.db.session() as session:
            inst = session.get(Instance, job.instance_id)
            inst.node.state, inst.node.state_reason = "quarantined", reason
            inst.node.state_reason += f" (at {datetime.now(UTC).isoformat(timespec='seconds')})"
            inst.holds_node_id = None
        self._end_ramdisk(job)
        try:
            with self.power(job.bmc, self.settings.bmc_timeout) as bmc:
                bmc.power_off()
        except Exception as exc:
            log.error("node %s: quarantined but could not power off: %s", job.node, exc)
