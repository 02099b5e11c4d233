"""Proof of isolation: what the design lets each pair reach, from the database, against
what real packets (ARP, see `metalnet.sim.lab.netns.probe.adjacent`) show.

For every node the database says which *planes* it may be on right now: OFF (no
power: it neither answers nor sends), the service VLAN, or its project network's
VLAN. A node whose step is done is on exactly one plane; while a step that moves its
port or its power runs, it may be on any of them (it may also be between two DHCP
leases), so only what no plane allows is then forbidden. For a pair:

- no plane in common (other project, project vs service, either one off): must not reach;
- both on the same single plane (same project network; both in the service VLAN): must reach;
- otherwise: either outcome is allowed.

A node on a single plane must also hold exactly its reserved address there (none when
off). The database is read before and after the packets; a node with any lifecycle
event in between counts as moving. The data plane is settled first (DHCP exchanges
that commits and boots triggered), so a finished step's effects are all in place.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from statistics import fmean

from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet.db.engine import Database
from metalnet.db.models import Instance, InstanceEvent, Node
from metalnet.lifecycle.states import PLANS, STILL_STEPS, InstanceState, Plane
from metalnet.sim.lab.dataplane import DataPlane
from metalnet.sim.lab.netns import Matrix

OFF = None
Planes = frozenset[int | None]
PROBE_TIMEOUT = 0.5


@dataclass(frozen=True)
class NodeView:
    """What the database says about one node at one moment.

    `planes`: where the node may be now; `anywhere`: every plane its lifecycle can
    take it to; `marker`: changes with every lifecycle event of the node, so a node
    whose marker changed during a measurement may have passed through any plane.
    """

    planes: Planes
    anywhere: Planes
    marker: tuple[int, int] | None


def node_views(session: Session, service_vlan: int) -> dict[str, NodeView]:
    """Each node's possible planes (VLAN ids, OFF) according to the lifecycle in the database."""
    views = {}
    for node in session.scalars(select(Node)):
        inst = session.scalar(select(Instance).where(Instance.holds_node_id == node.id))
        views[node.name] = _view(session, inst, service_vlan)
    return views


def _view(session: Session, inst: Instance | None, service_vlan: int) -> NodeView:
    if inst is None:
        off = frozenset({OFF})
        return NodeView(off, off, None)  # free (or quarantined) nodes are powered off
    where = {Plane.OFF: OFF, Plane.SERVICE: service_vlan, Plane.PROJECT: inst.network.vlan}
    anywhere = frozenset(where.values())
    last = session.scalar(
        select(InstanceEvent)
        .where(InstanceEvent.instance_id == inst.id)
        .order_by(InstanceEvent.id.desc())
    )
    marker = (inst.id, last.id)
    if inst.state == InstanceState.ACTIVE:
        return NodeView(frozenset({inst.network.vlan}), anywhere, marker)
    plan = PLANS.get(inst.state)
    leaves = plan.leaves if plan is not None else {}
    if inst.step not in leaves:
        return NodeView(anywhere, anywhere, marker)  # error: the port goes back, power unknown
    if (last.step, last.message) == (inst.step, "done") or inst.step in STILL_STEPS:
        return NodeView(frozenset({where[leaves[inst.step]]}), anywhere, marker)
    return NodeView(anywhere, anywhere, marker)


def during(before: NodeView, after: NodeView) -> Planes:
    """Where a node may have been between two readings of the database."""
    if before.marker == after.marker:
        return before.planes
    return before.anywhere | after.anywhere


def expectation(src: Planes, dst: Planes) -> bool | None:
    """True: src must reach dst; False: it must not; None: either is allowed."""
    shared = (src & dst) - {OFF}
    if not shared:
        return False
    if len(src) == 1 and src == dst:
        return True
    return None


@dataclass(frozen=True, eq=False)
class Measurement:
    """One reachability matrix, what the design expected, and where they disagree."""

    label: str
    seconds: float
    reach: Matrix
    expected: dict[str, dict[str, bool | None]]
    planes: dict[str, list[int | None]]
    addresses: dict[str, list[str]]
    mismatches: list[str]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> dict[str, object]:
        """The per-step record: label, verdict, probe time, how many pairs the design
        decided (must reach, must not) or left open (moving nodes), what disagreed."""
        verdicts = [want for row in self.expected.values() for want in row.values()]
        return {
            "label": self.label,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "pairs": {
                "must_reach": verdicts.count(True),
                "must_not_reach": verdicts.count(False),
                "either": verdicts.count(None),
            },
            "mismatches": self.mismatches,
        }

    def full(self) -> dict[str, object]:
        """Everything, for the final matrices of the report."""
        return {
            **self.summary(),
            "reach": self.reach,
            "expected": self.expected,
            "planes": self.planes,
            "addresses": self.addresses,
        }


class IsolationProof:
    """Measures the data plane against the design and keeps every measurement."""

    def __init__(self, plane: DataPlane, db: Database, timeout: float = PROBE_TIMEOUT) -> None:
        self.plane = plane
        self.db = db
        self.timeout = timeout
        self.measurements: list[Measurement] = []
        self._lock = threading.Lock()

    def _views(self) -> dict[str, NodeView]:
        with self.db.session() as session:
            views = node_views(session, self.db.settings.service_vlan)
        for name, vlan in self.plane.fixed_planes().items():
            views[name] = NodeView(frozenset({vlan}), frozenset({vlan}), None)
        return views

    def measure(self, label: str) -> Measurement:
        """Wait for the data plane to settle, probe every pair, compare with the design."""
        before = self._views()
        self.plane.settle()
        started = time.monotonic()
        reach, addresses = self.plane.observe(self.timeout)
        seconds = time.monotonic() - started
        after = self._views()
        planes = {name: during(before[name], after[name]) for name in reach}
        expected = {
            src: {dst: expectation(planes[src], planes[dst]) for dst in row}
            for src, row in reach.items()
        }
        mismatches = _disagreements(reach, expected, planes)
        mismatches += self._address_problems(planes, addresses)
        measurement = Measurement(
            label,
            seconds,
            reach,
            expected,
            {name: sorted(p, key=lambda v: -1 if v is None else v) for name, p in planes.items()},
            addresses,
            mismatches,
        )
        with self._lock:
            self.measurements.append(measurement)
        return measurement

    def _address_problems(
        self, planes: dict[str, Planes], addresses: dict[str, list[str]]
    ) -> list[str]:
        """Nodes on one plane must hold exactly their reservation there (nothing when off)."""
        problems = []
        for node, held in addresses.items():
            if len(planes[node]) != 1:
                continue
            (vlan,) = planes[node]
            reserved = None if vlan is OFF else self.plane.reserved(node, vlan)
            wanted = [] if vlan is OFF else [str(reserved)]
            if held != wanted:
                where = "powered off" if vlan is OFF else f"in VLAN {vlan}"
                problems.append(f"{node} holds {held or 'no address'}, {where} expected {wanted}")
        return problems

    def report(self, finals: dict[str, Measurement]) -> dict[str, object]:
        """Per-step verdicts and counts, plus the full matrices named in `finals`."""
        with self._lock:
            steps = [m.summary() for m in self.measurements if m not in finals.values()]
        seconds = [s["seconds"] for s in steps]
        pairs: Counter[str] = Counter()
        for step in steps:
            pairs.update(step["pairs"])
        return {
            "probe": "ARP from 0.0.0.0 (busybox arping -D), "
            f"{self.timeout:g}s timeout, every ordered pair in parallel",
            "lab_prefix": self.plane.prefix,
            "steps_passed": sum(1 for s in steps if s["ok"]),
            "steps_failed": sum(1 for s in steps if not s["ok"]),
            "probe_mean_seconds": round(fmean(seconds), 3) if seconds else None,
            "step_pairs": {
                kind: pairs[kind] for kind in ("must_reach", "must_not_reach", "either")
            },
            "steps": steps,
            "final": {label: m.full() for label, m in finals.items()},
        }


def _disagreements(
    reach: Matrix, expected: dict[str, dict[str, bool | None]], planes: dict[str, Planes]
) -> list[str]:
    """One line per pair whose packets contradict the design."""
    lines = []
    for src, row in reach.items():
        for dst, reached in row.items():
            want = expected[src][dst]
            if want is None or want == reached:
                continue
            verdict = "reached" if reached else "did not reach"
            rule = "the design forbids it" if reached else "the design requires it"
            lines.append(
                f"{src} {verdict} {dst}: {rule} "
                f"({src} on {_plane_names(planes[src])}, {dst} on {_plane_names(planes[dst])})"
            )
    return lines


def _plane_names(planes: Planes) -> str:
    return "/".join("off" if p is OFF else f"VLAN {p}" for p in sorted(planes, key=str))
