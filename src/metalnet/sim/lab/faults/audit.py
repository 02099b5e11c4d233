"""What the fault campaign checks after each fault, and how it settles the system first.

After a fault the campaign lets lifecycles finish, waits out pending commit-confirmed
rollbacks, then runs the reconciler until it finds no more drift (as `metalnet serve`
or an operator would). It then looks for anything *lost*:

* a port whose device VLAN differs from the database's desired VLAN and that no drift
  report and no instance error names ("unreported");
* an instance not in a final state, or in `error` without a message ("stuck");
* a change *applied twice* (below);
* a commit after which a port sat in a project VLAN it must not be in ("violations",
  from `Watch`, on every change of the switch's committed configuration);
* a successful journal entry (`switch_changes.ok`) the switch never showed
  ("unbacked": the log claims a change the device did not make).

Applied twice, precisely: an *intent* is one thing metalnet set out to do once -- a
change submitted in a batch, one reconcile pass's fix, or one run of a lifecycle
step that moves a port (from its "started" event to the instance's next event). An
intent carried out by more than one successful transaction is a duplicate. A step
that is *run* again (a second "started" event) is a new intent and allowed only after
a crash (worker killed, database restarted) between the runs: the first run could not
record that it finished, so it re-applies idempotently. Such re-runs are counted in
`reapplied`; a re-run with no crash before it is a duplicate. The device side backs
this up: every successful entry must show on the switch (`unbacked` otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from metalnet.db.engine import Database
from metalnet.db.models import Instance, InstanceEvent, SwitchChange, SwitchPort
from metalnet.sim.lab.faults.rig import FINAL, Activation, Watch, utc, wait_until
from metalnet.sim.switch.device import SimSwitch
from metalnet.switches.reconcile import Drift, reconcile

PORT_STEPS = ("port_to_service", "port_to_project")
Change = tuple[str, int]  # (interface, vlan)


@dataclass(frozen=True)
class Intent:
    """One thing metalnet set out to do once, with the time window it was done in."""

    label: str
    start: datetime
    end: datetime
    changes: frozenset[Change]


@dataclass
class Findings:
    """Everything the audit found; `lost()` is what must be empty."""

    unreported: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    unbacked: list[str] = field(default_factory=list)
    reapplied: list[str] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lost(self) -> dict[str, list[str]]:
        """The non-empty loss categories (empty dict: nothing lost)."""
        kinds = ("unreported", "stuck", "duplicates", "violations", "unbacked")
        return {k: getattr(self, k) for k in kinds if getattr(self, k)}


def now() -> datetime:
    return datetime.now(UTC)


# ----------------------------------------------------------------------------- settling


def settle(db: Database, switch: SimSwitch, passes: int = 3) -> tuple[list[Drift], list[Intent]]:
    """Wait out pending rollbacks, then reconcile until a pass finds no drift.

    Returns every drift reported (fixed or not) and one intent per reconcile pass.
    """
    wait_until(lambda: not switch.confirm_pending(), timeout=30, interval=0.1)
    seen: list[Drift] = []
    intents: list[Intent] = []
    for i in range(passes):
        start = now()
        drift = [d for report in reconcile(db, fix=True) for d in report.drift]
        fixes = frozenset((d.interface, d.expected_vlan) for d in drift if d.expected_vlan)
        intents.append(Intent(f"reconcile pass {i + 1}", start, now(), fixes))
        seen.extend(drift)
        if not drift:
            break
    return seen, intents


# ----------------------------------------------------------------------------- the audit


def audit(
    db: Database,
    switch: SimSwitch,
    watch: Watch,
    drift: list[Drift],
    intents: Iterable[Intent],
    crashes: Iterable[datetime] = (),
) -> Findings:
    """Judge the settled system; see the module docstring for every check."""
    found = Findings(violations=list(watch.violations))
    crashes = list(crashes)
    _instances(db, found)
    _ports(db, switch, drift, found)
    steps, reruns = lifecycle_intents(db, crashes)
    found.reapplied.extend(r for r, crashed in reruns if crashed)
    found.duplicates.extend(
        f"{r} (no crash before the re-run)" for r, crashed in reruns if not crashed
    )
    rows = ok_rows(db)
    found.duplicates.extend(duplicates(rows, [*intents, *steps]))
    found.unbacked.extend(unbacked(rows, watch.history))
    return found


def _instances(db: Database, found: Findings) -> None:
    with db.session() as session:
        for inst in session.scalars(select(Instance)):
            if inst.state not in FINAL:
                found.stuck.append(f"{inst.name} is {inst.state}/{inst.step}")
            elif inst.state == "error" and not (inst.error or "").strip():
                found.stuck.append(f"{inst.name} is in error without a reason")
            elif inst.state == "error":
                found.errors.append(f"{inst.name}: {inst.error}")


def _ports(db: Database, switch: SimSwitch, drift: list[Drift], found: Findings) -> None:
    """Every known port is in its desired VLAN, or a report or an error names it."""
    actual = switch.port_vlans()
    named = {d.interface for d in drift if not d.fixed}
    found.reported.extend(
        f"{d.interface}: expected {d.expected_vlan}, had {d.actual_vlan}"
        + (" (fixed)" if d.fixed else f" (not fixed: {d.error})")
        for d in drift
    )
    with db.session() as session:
        for port in session.scalars(select(SwitchPort)):
            # a port wanted disabled switches no traffic: the switch reports no VLAN
            want = port.desired_vlan if port.desired_enabled else None
            have = actual.get(port.interface)
            if want is None or want == have:
                continue
            if port.interface in named or any(port.interface in e for e in found.errors):
                continue
            found.unreported.append(f"{port.interface}: desired {want}, device {have}")


# ----------------------------------------------------------------------------- applied twice


@dataclass(frozen=True)
class OkRow:
    """One successful transaction of the switch change log."""

    id: int
    at: datetime
    seconds: float
    changes: frozenset[Change]


def ok_rows(db: Database) -> list[OkRow]:
    with db.session() as session:
        rows = session.scalars(select(SwitchChange).where(SwitchChange.ok.is_(True)))
        return [
            OkRow(
                r.id,
                utc(r.at),
                r.seconds,
                frozenset((p["interface"], int(p["vlan"])) for p in r.ports),
            )
            for r in rows
        ]


def lifecycle_intents(
    db: Database, crashes: list[datetime]
) -> tuple[list[Intent], list[tuple[str, bool]]]:
    """One intent per run of a port-moving step; re-runs with whether a crash preceded them."""
    intents: list[Intent] = []
    reruns: list[tuple[str, bool]] = []
    with db.session() as session:
        for inst in session.scalars(select(Instance)):
            events = list(
                session.scalars(
                    select(InstanceEvent)
                    .where(InstanceEvent.instance_id == inst.id)
                    .order_by(InstanceEvent.id)
                )
            )
            interface = inst.node.nics[0].port.interface
            vlans = {
                "port_to_service": db.settings.service_vlan,
                "port_to_project": inst.network.vlan,
            }
            first_start: dict[tuple[str, str], datetime] = {}
            phase = "terminate"
            for i, event in enumerate(events):
                phase = _phase(event, phase)
                if event.message != "started" or event.step not in PORT_STEPS:
                    continue
                start = utc(event.at)
                end = utc(events[i + 1].at) if i + 1 < len(events) else now()
                label = f"{inst.name} {phase} {event.step}"
                change = frozenset({(interface, vlans[event.step])})
                intents.append(Intent(label, start, end, change))
                key = (phase, event.step)
                if key in first_start:
                    crashed = any(first_start[key] <= c <= start for c in crashes)
                    reruns.append((f"{label} re-run", crashed))
                else:
                    first_start[key] = start
    return intents, reruns


def _phase(event: InstanceEvent, current: str) -> str:
    """Which plan an event belongs to: queued events say spawn or terminate."""
    if event.step == "queued":
        return "spawn" if "spawn" in event.message else "terminate"
    return current


def duplicates(rows: list[OkRow], intents: Iterable[Intent]) -> list[str]:
    """Intents carried out by more than one successful transaction."""
    found = []
    for intent in intents:
        for change in sorted(intent.changes):
            hits = [
                r.id for r in rows if intent.start <= r.at <= intent.end and change in r.changes
            ]
            if len(hits) > 1:
                found.append(
                    f"{intent.label}: {change[0]}->{change[1]} applied by transactions {hits}"
                )
    return found


def unbacked(rows: list[OkRow], history: list[Activation]) -> list[str]:
    """Successful journal entries whose changes the switch never showed around that time."""
    found = []
    for row in rows:
        begin = row.at - timedelta(seconds=row.seconds + 1.0)
        seen = [a.vlans for a in history if begin <= a.at <= row.at + timedelta(seconds=1)]
        for interface, vlan in sorted(row.changes):
            if not any(v.get(interface) == vlan for v in seen):
                found.append(f"transaction {row.id}: {interface}->{vlan} never on the switch")
    return found
