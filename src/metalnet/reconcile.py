"""Reconciliation: compare every switch's actual port state with the database, fix drift.

Desired state lives in the database. Someone changing a port by hand, a commit that
the switch rolled back, or a crash between "desired written" and "device changed"
all show up here as drift (port, expected VLAN, actual VLAN). Ports whose node is in
the middle of a lifecycle step are left to the lifecycle, which is already moving
them; ports bound to no node are wanted in the parking VLAN.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from sqlalchemy import select

from metalnet import metrics
from metalnet.db.engine import Database
from metalnet.db.models import Instance, Node, Switch
from metalnet.lifecycle.states import PLANS
from metalnet.switches.base import SwitchError
from metalnet.switching import Switching

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
    fixed: bool = False
    error: str = ""


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


def _wanted(db: Database, switch_name: str) -> dict[str, tuple[int | None, str | None]]:
    """interface -> (desired VLAN, node) for ports the lifecycle is not moving right now."""
    parking = db.settings.parking_vlan
    with db.session() as session:
        busy = set(
            session.scalars(select(Instance.node_id).where(Instance.state.in_(TRANSITIONAL)))
        )
        switch = session.scalar(select(Switch).where(Switch.name == switch_name))
        wanted = {}
        for port in switch.ports:
            node: Node | None = port.nic.node if port.nic else None
            if node is not None and node.id in busy:
                continue
            desired = port.desired_vlan if node is not None else parking
            if node is None and port.desired_vlan != parking:
                port.desired_vlan = parking  # unbound ports are parked, never left in a project
            wanted[port.interface] = (desired, node.name if node else None)
        return wanted


def check_switch(switching: Switching, switch_name: str, fix: bool) -> SwitchReport:
    """Read one switch and compare; with `fix`, queue the corrections and wait for them."""
    wanted = _wanted(switching.db, switch_name)
    if not wanted:
        return SwitchReport(switch_name, 0, ())
    try:
        actual = switching.read_ports(switch_name, sorted(wanted))
    except SwitchError as exc:
        metrics.RECONCILE_ERRORS.labels(switch_name).inc()
        return SwitchReport(switch_name, len(wanted), (), error=str(exc))
    drift = [
        Drift(switch_name, iface, vlan, actual[iface].vlan if iface in actual else None, node)
        for iface, (vlan, node) in sorted(wanted.items())
        if vlan is not None
        and (iface not in actual or actual[iface].vlan != vlan or len(actual[iface].vlans) > 1)
    ]
    metrics.DRIFT.labels(switch_name).set(len(drift))
    if fix and drift:
        drift = _fix(switching, drift)
    for d in drift:
        log.warning(
            "drift on switch %s port %s (node %s): expected VLAN %s, device has %s%s",
            d.switch,
            d.interface,
            d.node,
            d.expected_vlan,
            d.actual_vlan,
            " - fixed" if d.fixed else (f" - not fixed: {d.error}" if d.error else ""),
        )
    return SwitchReport(switch_name, len(wanted), tuple(drift))


def _fix(switching: Switching, drift: list[Drift]) -> list[Drift]:
    outcomes = switching.set_ports([(d.switch, d.interface, d.expected_vlan) for d in drift])
    return [
        Drift(d.switch, d.interface, d.expected_vlan, d.actual_vlan, d.node, o.ok, o.message)
        for d, o in zip(drift, outcomes, strict=True)
    ]


def reconcile(
    db: Database, fix: bool = True, switching: Switching | None = None
) -> list[SwitchReport]:
    """Check (and unless `fix` is False, correct) every switch; switches in parallel."""
    own = switching is None
    switching = switching or Switching(db)
    try:
        with db.session() as session:
            names = list(session.scalars(select(Switch.name).order_by(Switch.name)))
        with ThreadPoolExecutor(max_workers=min(16, len(names) or 1)) as pool:
            return list(pool.map(lambda n: check_switch(switching, n, fix), names))
    finally:
        if own:
            switching.close()


class PeriodicReconciler:
    """`metalnet serve`'s background reconciliation every `reconcile_interval` seconds.

    It shares the controller's switch queue, so its corrections coalesce with the
    lifecycles' port moves; what it finds is logged and exported as metrics.
    """

    def __init__(self, db: Database, switching: Switching) -> None:
        self.db = db
        self.switching = switching
        self.interval = db.settings.reconcile_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)

    def start(self) -> PeriodicReconciler:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                reports = reconcile(self.db, fix=True, switching=self.switching)
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
