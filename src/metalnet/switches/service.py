"""The switch service: every port change enters here, is guarded, recorded, then queued.

Callers (the lifecycle, `switch port-set`/`apply`, the reconciler) go down one path:
the isolation guard (`switches.guard`) checks each change inside the transaction that
writes its desired VLAN, and only a committed desired state is handed to the per-switch
work queue. The queue gets what it needs from below (the switch directory, the change
log, the advisory lock) and never calls back into this service, except for `_stale`.

Every queued change carries the desired state it was computed from (`Precondition`);
right before the device configuration is built, the queue's lane asks `_stale` which of
its changes no longer hold, with the switch's advisory lock held. `_stale` reads the
ports' rows FOR UPDATE, so a writer still in its transaction is waited for and seen. A
writer that commits after the check queues its own change after it, and that change
needs the same advisory lock, so it reaches the device after this one: the newest
desired state always ends up on the device, whichever worker queued what.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select, tuple_, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from metalnet import audit, inventory
from metalnet.config import Settings
from metalnet.db.engine import Database
from metalnet.db.models import PortAttachment, Switch, SwitchPort
from metalnet.errors import Conflict, InputError, NotFound
from metalnet.switches import guard
from metalnet.switches.advisory import RECONNECT, AdvisoryLock
from metalnet.switches.base import PortChange, PortState, SwitchError
from metalnet.switches.changelog import ChangeLog
from metalnet.switches.directory import SwitchDirectory
from metalnet.switches.drift import desired_text
from metalnet.switches.queue import ChangeOutcome, Precondition, SwitchQueue
from metalnet.validate import check_vlan

Move = tuple[str, str, int]  # (switch, interface, VLAN)
# What a correction may still enforce at fix time, for one port (None: nothing).
Enforceable = Callable[[Session, Settings, SwitchPort], int | None]


def desired_vlan(port: SwitchPort, settings: Settings) -> int | None:
    """The VLAN the database wants `port` in: its attachment's, its desired VLAN, or
    parked when unbound."""
    if port.attachment is not None:
        return port.attachment.vlan
    return port.desired_vlan if port.nic is not None else settings.parking_vlan


def desired_enabled(port: SwitchPort, settings: Settings) -> bool:
    """Whether the database wants `port` enabled: an attached port always; a parked
    (unbound) one unless `park_disabled` is set; a node's own port as recorded (it is
    wanted disabled while its node may still run a tenant's OS)."""
    if port.attachment is not None:
        return True
    if port.nic is None:
        return not settings.park_disabled
    return port.desired_enabled


@dataclass(frozen=True)
class Desired:
    """What the database wants one port to be: in `vlan` (None: nothing), enabled or not."""

    vlan: int | None
    enabled: bool = True

    @classmethod
    def of(cls, port: SwitchPort, settings: Settings) -> Desired:
        return cls(desired_vlan(port, settings), desired_enabled(port, settings))


# What `desired_vlan` reads of a port, loaded with the ports rather than one port at a time.
_OWNERS = (joinedload(SwitchPort.nic), joinedload(SwitchPort.attachment))


def _write_desired(session: Session, writes: Sequence[tuple[SwitchPort, PortChange]]) -> None:
    """Record the desired VLAN and enabled of many ports with one UPDATE statement.

    Setting the attribute on each loaded port would make the session's flush walk every
    relationship of every port, most of a burst's database time; the loaded ports are
    given the new value too, so what is computed from them afterwards sees it.
    """
    if writes:
        session.execute(
            update(SwitchPort),
            [{"id": p.id, "desired_vlan": c.vlan, "desired_enabled": c.enabled} for p, c in writes],
        )
    for port, change in writes:
        set_committed_value(port, "desired_vlan", change.vlan)
        set_committed_value(port, "desired_enabled", change.enabled)


@dataclass(frozen=True)
class Correction:
    """A port the reconciler found drifted, and the desired state it read before the device."""

    switch: str
    interface: str
    vlan: int
    enabled: bool = True


@contextmanager
def _one_writer(switch: str, interface: str) -> Iterator[None]:
    """Two writers of one port at once: the database constraints let one win; the loser
    gets a Conflict naming the port instead of a raw integrity error."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(
            f"switch {switch} port {interface} was changed concurrently; try again"
        ) from exc


class SwitchService:
    """Guards, records and queues port changes; reads ports back."""

    def __init__(
        self,
        db: Database,
        timeout: float | None = None,
        *,
        directory: SwitchDirectory | None = None,
        changelog: ChangeLog | None = None,
    ) -> None:
        self.db = db
        self.timeout = timeout or db.settings.switch_timeout
        self.directory = directory or SwitchDirectory(db, self.timeout)
        journal = changelog or ChangeLog(db)
        self.queue = SwitchQueue(
            self.directory.connect,
            self.directory.driver_class,
            journal.record,
            guard=AdvisoryLock(db).held,
            recheck=self._stale,
        )

    # Changing ports ------------------------------------------------------------------

    def set_ports(
        self,
        changes: Sequence[Move],
        override: guard.Override | None = None,
        timeout: float | None = None,
    ) -> list[ChangeOutcome]:
        """Move (switch, interface, vlan) triples and wait for every outcome, good and bad."""
        futures = self.submit_ports(changes, override)
        return [f.result(timeout or self.timeout * 4) for f in futures]

    def submit_ports(
        self, changes: Sequence[Move], override: guard.Override | None = None
    ) -> list[Future[ChangeOutcome]]:
        """Guard, record the desired state, then queue; one future per change.

        Raises `guard.PortRefused` (nothing recorded, nothing queued) when a change
        breaks isolation, unless `override` says why it must be made anyway. Ports
        metalnet does not know yet are added to the inventory. Malformed values are not
        recorded; the queue reports them as their change's outcome without sending them.
        A move sets the VLAN only: a port wanted disabled (its node may still run a
        tenant's OS) stays disabled; only a power-off that succeeded enables it.
        """
        by_switch: dict[str, list[PortChange]] = {}
        for switch_name, interface, vlan in changes:
            by_switch.setdefault(switch_name, []).append(PortChange(interface, vlan))
        refusals: list[guard.Refusal] = []
        preconditions: dict[str, list[Precondition | None]] = {}
        with self.db.session() as session:
            for switch_name, batch in by_switch.items():
                switch = inventory.get_switch(session, switch_name)
                refused, preconditions[switch_name], by_switch[switch_name] = self._record_desired(
                    session, switch, batch, guarded=override is None
                )
                refusals += refused
            if refusals and override is None:
                raise guard.PortRefused(refusals)  # rolls back: desired state untouched
        self._audit_override(refusals, override)
        futures = {
            switch: iter(self.queue.submit_many(switch, batch, preconditions[switch]))
            for switch, batch in by_switch.items()
        }
        return [next(futures[switch]) for switch, _iface, _vlan in changes]

    def _record_desired(
        self, session: Session, switch: Switch, batch: Sequence[PortChange], guarded: bool
    ) -> tuple[list[guard.Refusal], list[Precondition | None], list[PortChange]]:
        """Write the desired VLAN of every valid change; return what the guard refused,
        each change's precondition (None for a malformed one, which is not queued to the
        device: the queue reports it) and the changes to queue (a port wanted disabled
        stays so)."""
        ports = {
            p.interface: p
            for p in session.scalars(
                select(SwitchPort).where(SwitchPort.switch_id == switch.id).options(*_OWNERS)
            )
        }
        check = self.directory.driver_class(switch.name).check_interface
        valid: list[tuple[SwitchPort, PortChange]] = []
        recorded: list[SwitchPort | None] = []
        changes: list[PortChange] = []
        for change in batch:
            try:
                check(change.interface)
                check_vlan(change.vlan)
            except ValueError:
                recorded.append(None)
                changes.append(change)
                continue
            port = ports.get(change.interface)
            if port is None:
                port = ports[change.interface] = SwitchPort(
                    switch=switch, interface=change.interface
                )
                session.add(port)
            valid.append((port, change))
            recorded.append(port)
            changes.append(change)
        session.flush()
        found = guard.owners(session, [p for p, _c in valid])
        valid = [(p, self._as_wanted(p, c, found.get(p.id, guard.Owner()))) for p, c in valid]
        wanted = iter(c for _p, c in valid)
        changes = [
            c if port is None else next(wanted) for port, c in zip(recorded, changes, strict=True)
        ]
        refused = guard.check_all(session, self.db.settings, [(p, c.vlan) for p, c in valid], found)
        _write_desired(session, valid)
        preconditions = [
            None if port is None else self._precondition(port, guarded) for port in recorded
        ]
        return refused, preconditions, changes

    def _as_wanted(self, port: SwitchPort, change: PortChange, owner: guard.Owner) -> PortChange:
        """A move that sets a VLAN only (`switch port-set`, `switch apply`): the port
        stays disabled if it is wanted so, and goes disabled when its node may run its
        tenant's OS and the move leaves the project VLAN (`guard.may_run_tenant`)."""
        enabled = desired_enabled(port, self.db.settings)
        if guard.may_run_tenant(owner) and change.vlan != owner.project_vlan:
            enabled = False
        return PortChange(change.interface, change.vlan, enabled)

    def _precondition(self, port: SwitchPort, guarded: bool = True) -> Precondition:
        """The desired state a change of `port` is computed from, as just recorded."""
        settings = self.db.settings
        return Precondition(desired_vlan(port, settings), guarded, desired_enabled(port, settings))

    def _audit_override(
        self, refusals: Sequence[guard.Refusal], override: guard.Override | None
    ) -> None:
        if override is None:
            return
        for refusal in refusals:
            audit.record(
                self.db,
                override.actor,
                "port override",
                f"{refusal.switch} {refusal.interface} vlan {refusal.vlan}",
                True,
                f"reason: {override.reason}; overrode: {refusal}",
            )

    def move_node(
        self, node_name: str, vlan: int, timeout: float | None = None, *, enabled: bool = True
    ) -> ChangeOutcome:
        """Put the node's port in `vlan`, enabled or disabled; raise SwitchError when the
        switch did not take it. Disabling is guarded as the VLAN it keeps (`guard`)."""
        check_vlan(vlan)
        with self.db.session() as session:
            port = inventory.node_port(inventory.get_node(session, node_name))
            if refusal := guard.check(session, self.db.settings, port, vlan):
                raise guard.PortRefused([refusal])
            port.desired_vlan, port.desired_enabled = vlan, enabled
            switch, interface = port.switch.name, port.interface
            precondition = self._precondition(port)
        change = PortChange(interface, vlan, enabled)
        outcome = self.queue.submit(switch, change, precondition).result(
            timeout or self.timeout * 4
        )
        if not outcome.ok:
            raise SwitchError(switch, outcome.message, [interface])
        return outcome

    def attach(
        self, switch_name: str, interface: str, vlan: int, owner: str
    ) -> Future[ChangeOutcome]:
        """Record `owner`'s attachment of a port in `vlan` (guarded), then queue the move.

        Raises `guard.PortRefused` when the attachment or the move breaks isolation;
        nothing is recorded then. Re-attaching by the same owner moves the port.
        """
        check_vlan(vlan)
        with _one_writer(switch_name, interface), self.db.session() as session:
            port = self._port(session, switch_name, interface)
            if refusal := guard.attachment_refusal(session, self.db.settings, port, owner, vlan):
                raise guard.PortRefused([refusal])
            if port.attachment is None:
                port.attachment = PortAttachment(owner=owner, vlan=vlan)
            port.attachment.vlan = vlan
            session.flush()
            if refusal := guard.check(session, self.db.settings, port, vlan):
                raise guard.PortRefused([refusal])
            port.desired_vlan, port.desired_enabled = vlan, True
            change = PortChange(interface, vlan, desired_enabled(port, self.db.settings))
            precondition = self._precondition(port)
        return self.queue.submit(switch_name, change, precondition)

    def detach(self, switch_name: str, interface: str, owner: str) -> Future[ChangeOutcome]:
        """End `owner`'s attachment of a port and queue the port back to its resting VLAN."""
        with _one_writer(switch_name, interface), self.db.session() as session:
            port = self._port(session, switch_name, interface)
            attachment = port.attachment
            if attachment is None or attachment.owner != owner:
                held = f"attached to {attachment.owner}" if attachment else "not attached"
                raise NotFound(
                    f"switch {switch_name} port {interface} has no attachment of {owner} ({held})"
                )
            session.delete(attachment)
            session.flush()
            session.expire(port, ["attachment"])
            vlan = guard.resting_vlan(guard.port_owner(session, port), self.db.settings)
            if refusal := guard.check(session, self.db.settings, port, vlan):
                raise guard.PortRefused([refusal])
            port.desired_vlan, port.desired_enabled = vlan, True
            change = PortChange(interface, vlan, desired_enabled(port, self.db.settings))
            precondition = self._precondition(port)
        return self.queue.submit(switch_name, change, precondition)

    def _port(self, session: Session, switch_name: str, interface: str) -> SwitchPort:
        """The stored port (added to the inventory when new), its name checked first."""
        switch = inventory.get_switch(session, switch_name)
        try:
            self.directory.driver_class(switch.name).check_interface(interface)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        port = session.scalar(
            select(SwitchPort).where(
                SwitchPort.switch_id == switch.id, SwitchPort.interface == interface
            )
        )
        if port is None:
            port = SwitchPort(switch=switch, interface=interface)
            session.add(port)
            session.flush()
        return port

    def correct(
        self, corrections: Sequence[Correction], enforceable: Enforceable
    ) -> list[ChangeOutcome]:
        """Put drifted ports back, compare-and-set against the desired state at fix time.

        A correction is queued only if `enforceable(port)`, evaluated now, still gives
        the VLAN the caller read, and the port is still wanted enabled or disabled as
        read; a change of owner in between (a terminate, a new spawn) wins and the
        correction is dropped. Queued, it is conditional on that desired state like
        every change (`_stale`), so an owner change that lands after this check wins
        too. Desired state is never written here.
        The corrections of a switch are queued together, so they make one transaction
        however long the checks take.
        """
        pending: list[ChangeOutcome | Future[ChangeOutcome]] = []
        queued: dict[str, list[tuple[int, PortChange]]] = {}
        with self.db.session() as session:
            guard.lock_ports(session, self._port_ids(session, corrections))
            for c in corrections:
                change = PortChange(c.interface, c.vlan, c.enabled)
                why_not = self._why_not(session, c, enforceable)
                pending.append(ChangeOutcome(c.switch, change, ok=False, message=why_not))
                if not why_not:
                    queued.setdefault(c.switch, []).append((len(pending) - 1, change))
            for switch, items in queued.items():
                futures = self.queue.submit_many(
                    switch,
                    [change for _i, change in items],
                    [Precondition(c.vlan, enabled=c.enabled) for _i, c in items],
                )
                for (index, _change), future in zip(items, futures, strict=True):
                    pending[index] = future
        timeout = self.timeout * 4
        return [o if isinstance(o, ChangeOutcome) else o.result(timeout) for o in pending]

    @staticmethod
    def _port_ids(session: Session, corrections: Sequence[Correction]) -> list[int]:
        wanted = sorted({(c.switch, c.interface) for c in corrections})
        return list(
            session.scalars(
                select(SwitchPort.id)
                .join(Switch)
                .where(tuple_(Switch.name, SwitchPort.interface).in_(wanted))
            )
        )

    def _why_not(self, session: Session, c: Correction, enforceable: Enforceable) -> str:
        """Why a correction must not be made now ("" when it may)."""
        port = session.scalar(
            select(SwitchPort)
            .join(Switch)
            .where(Switch.name == c.switch, SwitchPort.interface == c.interface)
            .with_for_update()
        )
        if port is None:
            return "the port is no longer in the inventory"
        wanted = enforceable(session, self.db.settings, port)
        if wanted != c.vlan or desired_enabled(port, self.db.settings) != c.enabled:
            owner = (
                "the lifecycle"
                if wanted is None
                else desired_text(wanted, desired_enabled(port, self.db.settings))
            )
            return f"desired state changed since it was read; left to {owner}"
        refusal = guard.check(session, self.db.settings, port, c.vlan)
        return f"refused: {refusal}" if refusal else ""

    def _stale(
        self, switch_name: str, items: Sequence[tuple[PortChange, Precondition]]
    ) -> dict[str, str]:
        """interface -> why its queued change no longer holds: the port's desired state
        (VLAN, enabled) is not the one the change was computed from, or the guard refuses
        the change now.

        The queue's lane calls this right before building the device configuration,
        with the switch's advisory lock held; the ports' rows are locked meanwhile.
        """
        return RECONNECT.call(
            lambda: self._stale_once(switch_name, items),
            retry_on=(DBAPIError,),
            what=f"precondition check on switch {switch_name}",
        )

    def _stale_once(
        self, switch_name: str, items: Sequence[tuple[PortChange, Precondition]]
    ) -> dict[str, str]:
        with self.db.session() as session:
            ports = {
                p.interface: p
                for p in session.scalars(
                    select(SwitchPort)
                    .join(Switch)
                    .where(
                        Switch.name == switch_name,
                        SwitchPort.interface.in_([c.interface for c, _p in items]),
                    )
                    .order_by(SwitchPort.id)
                    .with_for_update(of=SwitchPort)
                    .options(*_OWNERS)
                )
            }
            stale: dict[str, str] = {}
            guarded: list[tuple[SwitchPort, int]] = []
            for change, precondition in items:
                port = ports.get(change.interface)
                if port is None:
                    stale[change.interface] = "the port is no longer in the inventory"
                    continue
                now = Desired.of(port, self.db.settings)
                if (now.vlan, now.enabled) != (precondition.desired, precondition.enabled):
                    stale[change.interface] = (
                        f"the desired state is now {desired_text(now.vlan, now.enabled)}"
                    )
                elif precondition.guarded:
                    guarded.append((port, change.vlan))
            for refusal in guard.check_all(session, self.db.settings, guarded):
                stale[refusal.interface] = f"refused now: {refusal}"
            return stale

    # Reading -----------------------------------------------------------------------

    def desired_ports(self, switch_name: str) -> dict[str, Desired]:
        """interface -> desired state of every port the inventory knows."""
        with self.db.session() as session:
            switch = inventory.get_switch(session, switch_name)
            return {p.interface: Desired.of(p, self.db.settings) for p in switch.ports}

    def read_ports(
        self, switch_name: str, interfaces: Sequence[str] | None = None
    ) -> dict[str, PortState]:
        """The device's committed port state, over a fresh session."""
        with self.directory.connect(switch_name) as driver:
            return driver.read_ports(interfaces)

    def close(self) -> None:
        self.queue.close()
