"""Switches as the inventory knows them: sessions from stored credentials, a change log
in the database, and durable port moves (desired state written before the device).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager

from sqlalchemy import Connection, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from metalnet import inventory, metrics
from metalnet.db.engine import Database
from metalnet.db.models import Switch, SwitchChange, SwitchPort
from metalnet.switches import driver_class, open_driver
from metalnet.switches.base import PortChange, PortState, SwitchDriver, SwitchError, SwitchTarget
from metalnet.switches.queue import ChangeOutcome, CommitRecord, SwitchQueue
from metalnet.validate import check_vlan

LOCK_ATTEMPTS = 5


def target_of(switch: Switch) -> SwitchTarget:
    """Connection details of a stored switch."""
    return SwitchTarget(switch.name, switch.host, switch.port, switch.username, switch.password)


class Switching:
    """Opens sessions from the database, queues changes, journals every commit."""

    def __init__(self, db: Database, timeout: float | None = None) -> None:
        self.db = db
        self.timeout = timeout or db.settings.switch_timeout
        self._drivers: dict[str, type[SwitchDriver]] = {}
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
        conn = self._locked_connection(key)
        try:
            yield
        finally:
            # best effort: a lock dies with its connection, e.g. when the database restarts
            with contextlib.suppress(DBAPIError):
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), key)
            with contextlib.suppress(DBAPIError):
                conn.close()

    def _locked_connection(self, key: dict[str, str]) -> Connection:
        """A connection holding the switch's advisory lock; retried while the database is away."""
        attempt = 1
        while True:
            try:
                conn = self.db.engine.connect()
            except DBAPIError:
                if attempt == LOCK_ATTEMPTS:
                    raise
            else:
                try:
                    conn.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), key)
                    return conn
                except DBAPIError:
                    conn.close()
                    if attempt == LOCK_ATTEMPTS:
                        raise
            time.sleep(2**attempt)
            attempt += 1

    def driver_of(self, name: str) -> type[SwitchDriver]:
        """Driver class of the named switch (for validation before sending), looked up once."""
        if name not in self._drivers:
            self._drivers[name] = driver_class(self._switch(name)[0])
        return self._drivers[name]

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
        by_switch: dict[str, list[PortChange]] = {}
        for switch_name, interface, vlan in changes:
            by_switch.setdefault(switch_name, []).append(PortChange(interface, vlan))
        with self.db.session() as session:
            for switch_name, batch in by_switch.items():
                self._record_desired(session, inventory.get_switch(session, switch_name), batch)
        futures = {
            switch: iter(self.queue.submit_many(switch, batch))
            for switch, batch in by_switch.items()
        }
        return [next(futures[switch]) for switch, _iface, _vlan in changes]

    @staticmethod
    def _record_desired(session: Session, switch: Switch, batch: Sequence[PortChange]) -> None:
        """Write the desired VLAN of every valid change; bad ones are the queue's to report."""
        ports = {p.interface: p for p in switch.ports}
        check = driver_class(switch.driver).check_interface
        for change in batch:
            try:
                check(change.interface)
                check_vlan(change.vlan)
            except ValueError:
                continue
            port = ports.get(change.interface)
            if port is None:
                port = ports[change.interface] = SwitchPort(
                    switch=switch, interface=change.interface
                )
                session.add(port)
            port.desired_vlan = change.vlan

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
