"""Switches as the inventory knows them: sessions from stored credentials, a change log
in the database, and durable port moves (desired state written before the device).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from metalnet import inventory, metrics
from metalnet.db.engine import Database
from metalnet.db.models import Switch, SwitchChange, SwitchPort
from metalnet.switches import driver_class, open_driver
from metalnet.switches.base import PortChange, PortState, SwitchDriver, SwitchError, SwitchTarget
from metalnet.switches.queue import ChangeOutcome, CommitRecord, SwitchQueue
from metalnet.validate import check_vlan


def target_of(switch: Switch) -> SwitchTarget:
    """Connection details of a stored switch."""
    return SwitchTarget(switch.name, switch.host, switch.port, switch.username, switch.password)


class Switching:
    """Opens sessions from the database, queues changes, journals every commit."""

    def __init__(self, db: Database, timeout: float | None = None) -> None:
        self.db = db
        self.timeout = timeout or db.settings.switch_timeout
        self.queue = SwitchQueue(self.connect, self.driver_of, self.record, guard=self.exclusive)

    def _switch(self, name: str) -> tuple[str, SwitchTarget]:
        with self.db.session() as session:
            switch = inventory.get_switch(session, name)
            return switch.driver, target_of(switch)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """On PostgreSQL, hold an advisory lock on the switch while committing to it.

        Workers sharing the database then work one switch one at a time; a worker that
        dies loses its connection and with it the lock. SQLite means one process.
        """
        if self.db.engine.dialect.name != "postgresql":
            yield
            return
        key = {"key": f"metalnet-switch:{name}"}
        with self.db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), key)
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), key)

    def driver_of(self, name: str) -> type[SwitchDriver]:
        """Driver class of the named switch (for validation before sending)."""
        return driver_class(self._switch(name)[0])

    def connect(self, name: str) -> SwitchDriver:
        """An open session to the named switch."""
        driver, target = self._switch(name)
        return open_driver(driver, target, self.timeout)

    def record(self, commit: CommitRecord) -> None:
        """Write one transaction attempt to the switch change log and the metrics."""
        metrics.COMMITS.labels(commit.switch, "ok" if commit.ok else "failed").inc()
        metrics.COMMIT_SECONDS.labels(commit.switch).observe(commit.seconds)
        if commit.ok:
            metrics.PORTS_CHANGED.labels(commit.switch).inc(len(commit.changes))
        with self.db.session() as session:
            switch_id = session.scalar(select(Switch.id).where(Switch.name == commit.switch))
            session.add(
                SwitchChange(
                    switch_id=switch_id,
                    switch_name=commit.switch,
                    ports=[{"interface": c.interface, "vlan": c.vlan} for c in commit.changes],
                    ok=commit.ok,
                    seconds=commit.seconds,
                    message=commit.message,
                )
            )

    def set_ports(
        self, changes: Sequence[tuple[str, str, int]], timeout: float | None = None
    ) -> list[ChangeOutcome]:
        """Move (switch, interface, vlan) triples and wait for every outcome, good and bad."""
        futures = self.submit_ports(changes)
        return [f.result(timeout or self.timeout * 4) for f in futures]

    def submit_ports(self, changes: Sequence[tuple[str, str, int]]) -> list[Future[ChangeOutcome]]:
        """Desired state first, then queue the devices' changes; one future per change.

        Ports metalnet does not know yet are added to the inventory. Bad values are not
        recorded; the queue reports them as their change's outcome without sending them.
        """
        valid: list[tuple[str, PortChange]] = []
        with self.db.session() as session:
            for switch_name, interface, vlan in changes:
                switch = inventory.get_switch(session, switch_name)
                valid.append((switch_name, PortChange(interface, vlan)))
                try:
                    driver_class(switch.driver).check_interface(interface)
                    check_vlan(vlan)
                except ValueError:
                    continue  # the queue reports it as this change's outcome
                port = self._port(session, switch, interface)
                port.desired_vlan = vlan
        return [self.queue.submit(sw, change) for sw, change in valid]

    @staticmethod
    def _port(session: Session, switch: Switch, interface: str) -> SwitchPort:
        port = session.scalar(
            select(SwitchPort).where(
                SwitchPort.switch_id == switch.id, SwitchPort.interface == interface
            )
        )
        if port is None:
            port = SwitchPort(switch=switch, interface=interface)
            session.add(port)
        return port

    def move_node(self, node_name: str, vlan: int, timeout: float | None = None) -> ChangeOutcome:
        """Put the node's port in `vlan`; raise SwitchError when the switch did not take it."""
        check_vlan(vlan)
        with self.db.session() as session:
            port = inventory.node_port(inventory.get_node(session, node_name))
            port.desired_vlan = vlan
            switch, interface = port.switch.name, port.interface
        outcome = self.queue.submit(switch, PortChange(interface, vlan)).result(
            timeout or self.timeout * 4
        )
        if not outcome.ok:
            raise SwitchError(switch, outcome.message, [interface])
        return outcome

    def read_ports(
        self, switch_name: str, interfaces: Sequence[str] | None = None
    ) -> dict[str, PortState]:
        """The device's committed port state, over a fresh session."""
        with self.connect(switch_name) as driver:
            return driver.read_ports(interfaces)

    def close(self) -> None:
        self.queue.close()


def desired_ports(db: Database, switch_name: str) -> dict[str, int | None]:
    """interface -> desired VLAN for every port of the switch the inventory knows."""
    with db.session() as session:
        switch = inventory.get_switch(session, switch_name)
        return {p.interface: p.desired_vlan for p in switch.ports}
