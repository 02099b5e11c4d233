"""The lifecycle as data: every state, every step and the order of each plan.

Instance, node and agent-task states live here and nowhere else; so do the plans,
each an ordered tuple of named steps. The engine dispatches a step through a table
keyed by its name; the simulators and the isolation checks read the same plans, so a
step added or moved here is seen by all of them at once.

The order of each plan is the safety argument (see docs, "The lifecycle"):

spawn:     port_to_service -> pxe_boot -> deploy -> power_off -> disk_boot
           -> port_to_project -> power_on
terminate: port_to_service -> pxe_boot -> erase -> power_off -> release
clean:     port_to_service -> pxe_boot -> erase -> power_off   (a node newly enrolled)

The node's port is in the service VLAN before the node boots the ramdisk; after the
deploy the node is powered off, its port moved into the project VLAN (committed and
read back), and only then is it powered on into the tenant's image. On terminate
the node is powered off and its port goes back to the service VLAN before anything
else happens, so the tenant's OS never runs on the service VLAN.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class InstanceState(enum.StrEnum):
    """Where an instance's lifecycle is; BUILDING and DELETING have a plan to run."""

    BUILDING = "building"
    ACTIVE = "active"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"


LIVE = (
    InstanceState.BUILDING,
    InstanceState.ACTIVE,
    InstanceState.DELETING,
    InstanceState.ERROR,
)
"""States in which an instance still holds (or may hold) its node and name."""


class NodeState(enum.StrEnum):
    """Whether a node can be handed out. Only AVAILABLE nodes are ever offered; a node
    enrolled is CLEANING (its disk erased and verified by the CLEAN plan) first."""

    CLEANING = "cleaning"
    AVAILABLE = "available"
    DEPLOYING = "deploying"
    ACTIVE = "active"
    ERROR = "error"
    QUARANTINED = "quarantined"


class TaskState(enum.StrEnum):
    """An agent task: PENDING and RUNNING are open; the others are final."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


OPEN_TASK = (TaskState.PENDING, TaskState.RUNNING)


class Step(enum.StrEnum):
    """Names of lifecycle steps, as recorded in `instances.step` and the history."""

    QUEUED = "queued"
    PORT_TO_SERVICE = "port_to_service"
    PXE_BOOT = "pxe_boot"
    DEPLOY = "deploy"
    POWER_OFF = "power_off"
    DISK_BOOT = "disk_boot"
    PORT_TO_PROJECT = "port_to_project"
    POWER_ON = "power_on"
    ERASE = "erase"
    RELEASE = "release"


class Plane(enum.StrEnum):
    """Where a step leaves the node: reachable on the service network, the project's
    network, or powered off (reachable nowhere)."""

    OFF = "off"
    SERVICE = "service"
    PROJECT = "project"


@dataclass(frozen=True)
class Plan:
    """An ordered list of steps, run for instances (or nodes) in `state`, ending in `done`.

    `agent_task` is what the ramdisk's agent is asked to do during the plan;
    `leaves` says where each step leaves the node once it is done.
    """

    name: str
    state: str
    done: str
    agent_task: str
    steps: tuple[Step, ...]
    leaves: dict[Step, Plane]

    def after(self, step: str | None) -> tuple[Step, ...]:
        """The steps still to run when `step` is the one recorded (resume from it)."""
        return self.steps[self.steps.index(step) :] if step in self.steps else self.steps


SPAWN = Plan(
    name="spawn",
    state=InstanceState.BUILDING,
    done=InstanceState.ACTIVE,
    agent_task="deploy",
    steps=(
        Step.PORT_TO_SERVICE,
        Step.PXE_BOOT,
        Step.DEPLOY,
        Step.POWER_OFF,
        Step.DISK_BOOT,
        Step.PORT_TO_PROJECT,
        Step.POWER_ON,
    ),
    leaves={
        Step.QUEUED: Plane.OFF,
        Step.PORT_TO_SERVICE: Plane.OFF,
        Step.PXE_BOOT: Plane.SERVICE,
        Step.DEPLOY: Plane.SERVICE,
        Step.POWER_OFF: Plane.OFF,
        Step.DISK_BOOT: Plane.OFF,
        Step.PORT_TO_PROJECT: Plane.OFF,
        Step.POWER_ON: Plane.PROJECT,
    },
)

TERMINATE = Plan(
    name="terminate",
    state=InstanceState.DELETING,
    done=InstanceState.DELETED,
    agent_task="erase",
    steps=(Step.PORT_TO_SERVICE, Step.PXE_BOOT, Step.ERASE, Step.POWER_OFF, Step.RELEASE),
    leaves={
        Step.PORT_TO_SERVICE: Plane.OFF,  # powered off first, else port disabled: see the engine
        Step.PXE_BOOT: Plane.SERVICE,
        Step.ERASE: Plane.SERVICE,
        Step.POWER_OFF: Plane.OFF,
        Step.RELEASE: Plane.OFF,
    },
)

CLEAN = Plan(
    name="clean",
    state=NodeState.CLEANING,
    done=NodeState.AVAILABLE,
    agent_task="erase",
    steps=(Step.PORT_TO_SERVICE, Step.PXE_BOOT, Step.ERASE, Step.POWER_OFF),
    leaves={
        Step.PORT_TO_SERVICE: Plane.OFF,
        Step.PXE_BOOT: Plane.SERVICE,
        Step.ERASE: Plane.SERVICE,
        Step.POWER_OFF: Plane.OFF,
    },
)
"""A node's erase before it is first offered: a terminate without an instance."""

PLANS = {plan.state: plan for plan in (SPAWN, TERMINATE)}
"""The plan each unfinished instance state runs."""

INTO_PROJECT = frozenset(SPAWN.steps[SPAWN.steps.index(Step.PORT_TO_PROJECT) :])
"""Spawn steps from the port's move into the project VLAN on: the port may be there."""

NODE_PLANS = {CLEAN.state: CLEAN}
"""The plan each unfinished node state runs."""

NODE_STATES = {
    None: (NodeState.AVAILABLE, NodeState.CLEANING, NodeState.QUARANTINED),
    InstanceState.BUILDING: (NodeState.DEPLOYING,),
    InstanceState.ACTIVE: (NodeState.ACTIVE,),
    InstanceState.DELETING: (NodeState.DEPLOYING, NodeState.ACTIVE, NodeState.ERROR),
    InstanceState.ERROR: (NodeState.ERROR,),
}
"""The states a node may be in, by the state of the instance holding it (None: no
instance holds it). A node's state says what its holder's plan left it as: DEPLOYING
only while a spawn runs (or the terminate that interrupted it), ERROR once its
instance's plan failed, whichever plan it was."""

STILL_STEPS = (Step.DEPLOY, Step.ERASE, Step.DISK_BOOT, Step.PORT_TO_PROJECT, Step.RELEASE)
"""Steps during which the node already is where they leave it (powered off, or in the
ramdisk on the service VLAN): they change nothing a neighbour could reach."""
