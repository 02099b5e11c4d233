"""Reconciliation: compare every switch's actual port state with the database, fix drift.

Desired state lives in the database. Someone changing a port by hand, a commit that
the switch rolled back, or a crash between "desired written" and "device changed"
all show up here as drift, judged by the one drift rule (`switches.drift`). Ports
whose node is in the middle of a lifecycle step are left to the lifecycle, which is
already moving them; ports bound to no node are wanted in the parking VLAN.

The reconciler never writes desired state. Its corrections go through the switch
service's compare-and-set (`SwitchService.correct`): a port whose desired state or
owner changed between the reconciler's read and its fix is left to its new owner.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet import metrics
from metalnet.config import Settings
from metalnet.db.engine import Database
from metalnet.db.models import Instance, Switch, SwitchPort
from metalnet.lifecycle.states import PLANS
from metalnet.switches.base import SwitchError
from metalnet.switches.drift import describe, desired_text, in_sync
from metalnet.switches.service import Correction, SwitchService, desired_enabled, desired_vlan

log = logging.getLogger(__name__)

TRANSITIONAL = tuple(PLANS)


@dataclass(frozen=True)
class Drift:
    """One port whose device state differs from the database."""

    switch: str
    interface: str
    expected_vlan: int | None
    actual_vlan: int | None
    node: str | None
    device: str = ""
    fixed: bool = False
    error: str = ""
    expected_enabled: bool = True


@dataclass(frozen=True)
class SwitchReport:
    """What reconciling one switch found."""

    switch: str
    ports_checked: int
    drift: tuple[Drift, ...]
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["drift"] = [asdict(d) for d in self.drift]
        return data


def enforceable(session: Session, settings: Settings, port: SwitchPort) -> int | None:
    """The VLAN the reconciler may hold `port` to now; None while a lifecycle step owns it."""
    node = port.nic.node if port.nic is not None else None
    if node is not None and session.scalar(
        select(Instance.id).where(
            Instance.holds_node_id == node.id, Instance.state.in_(TRANSITIONAL)
        )
    ):
        return None
    return desired_vlan(port, settings)


def _wanted(db: Database, switch_name: str) -> dict[str, tuple[int, bool, str | None]]:
    """interface -> (VLAN to enforce, enabled, node) for ports the lifecycle is not moving
    right now."""
    with db.session() as session:
        switch = session.scalar(select(Switch).where(Switch.name == switch_name))
        wanted = {}
        for port in switch.ports:
            vlan = enforceable(session, db.settings, port)
            if vlan is not None:
                node = port.nic.node.name if port.nic else None
                wanted[port.interface] = (vlan, desired_enabled(port, db.settings), node)
        return wanted


def check_switch(service: SwitchService, switch_name: str, fix: bool) -> SwitchReport:
    """Read one switch and compare; with `fix`, queue the corrections and wait for them."""
    wanted = _wanted(service.db, switch_name)
    if not wanted:
        return SwitchReport(switch_name, 0, ())
    try:
        actual = service.read_ports(switch_name, sorted(wanted))
    except SwitchError as exc:
        metrics.RECONCILE_ERRORS.labels(switch_name).inc()
        return SwitchReport(switch_name, len(wanted), (), error=str(exc))
    drift = []
    for iface, (vlan, enabled, node) in sorted(wanted.items()):
        state = actual.get(iface)
        if not in_sync(vlan, state, enabled):
            seen = state.vlan if state else None
            drift.append(
                Drift(
                    switch_name, iface, vlan, seen, node, describe(state), expected_enabled=enabled
                )
            )
    metrics.DRIFT.labels(switch_name).set(len(drift))
    if fix and drift:
        drift = _fix(service, drift)
    for d in drift:
        log.warning(
            "drift on switch %s port %s (node %s): expected %s, device has %s%s",
            d.switch,
            d.interface,
            d.node,
            desired_text(d.expected_vlan, d.expected_enabled),
            d.device,
            " - fixed" if d.fixed else (f" - not fixed: {d.error}" if d.error else ""),
        )
    return SwitchReport(switch_name, len(wanted), tuple(drift))


def _fix(service: SwitchService, drift: list[Drift]) -> list[Drift]:
    corrections = [
        Correction(d.switch, d.interface, d.expected_vlan, d.expected_enabled) for d in drift
    ]
    outcomes = service.correct(corrections, enforceable)
    return [
        dataclasses.replace(d, fixed=o.ok and not o.superseded, error=o.message)
        for d, o in zip(drift, outcomes, strict=True)
    ]


def reconcile(
    db: Database, fix: bool = True, service: SwitchService | None = None
) -> list[SwitchReport]:
    """Check (and unless `fix` is False, correct) every switch; switches in parallel."""
    own = service is None
    service = service or SwitchService(db)
    try:
        with db.session() as session:
            names = list(session.scalars(select(Switch.name).order_by(Switch.name)))
        with ThreadPoolExecutor(max_workers=min(16, len(names) or 1)) as pool:
            return list(pool.map(lambda n: check_switch(service, n, fix), names))
    finally:
        if own:
            service.close()


class PeriodicReconciler:
    """`metalnet serve`'s background reconciliation every `reconcile_interval` seconds.

    It shares the controller's switch queue, so its corrections coalesce with the
    lifecycles' port moves; what it finds is logged and exported as metrics.
    """

    def __init__(self, db: Database, service: SwitchService) -> None:
        self.db = db
        self.service = service
        self.interval = db.settings.reconcile_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)

    def start(self) -> PeriodicReconciler:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                reports = reconcile(self.db, fix=True, service=self.service)
            except Exception:
                log.exception("periodic reconciliation failed; trying again next round")
                continue
            drift = sum(len(r.drift) for r in reports)
            errors = [r.switch for r in reports if r.error]
            log.info(
                "reconciled %d switches: %d drifted ports, unreadable: %s",
                len(reports),
                drift,
                ", ".join(errors) or "none",
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
