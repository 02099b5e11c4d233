"""The worker: finds instances with unfinished lifecycles and runs each in a thread.

On start it picks up whatever a previous controller left half-done, which is how a
kill -9 is recovered. One thread per instance lets a mass deployment's port moves
meet in the switch queue, where they are coalesced into one commit per switch.

Several workers (processes, machines) may share one database: an instance (or a node
being erased before its first use) is carried out only by the worker holding its
lease. Leases are renewed while the lifecycle runs and expire when a worker dies, so
another worker takes the instance over and resumes it from the recorded step; no
lifecycle is ever run by two workers at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update

from metalnet.db.models import Instance, Node
from metalnet.lifecycle.engine import Engine
from metalnet.lifecycle.states import NODE_PLANS, PLANS

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Kind:
    """What a worker carries out: rows of `table` in one of `states`, run by `run`."""

    table: type[Instance] | type[Node]
    states: tuple[str, ...]
    run: Callable[[Engine, int], str]


KINDS = (
    Kind(Instance, tuple(PLANS), Engine.run),
    Kind(Node, tuple(NODE_PLANS), Engine.run_node),
)
"""Instances with a lifecycle to run, and nodes with their own (the initial erase)."""

Key = tuple[Kind, int]


class Worker:
    """Polls the database for work; `stop()` stops taking new work."""

    def __init__(
        self, engine: Engine, poll_interval: float | None = None, lease: float | None = None
    ) -> None:
        self.engine = engine
        self.db = engine.db
        self.name = engine.worker
        self.lease = timedelta(seconds=lease or engine.settings.lease_seconds)
        self.poll_interval = poll_interval or engine.settings.poll_interval
        self._running: dict[Key, threading.Thread] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lifecycle-worker", daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.renew()
                self.scan()
            except Exception:
                log.exception("worker %s: scan failed; retrying", self.name)
            self._stop.wait(self.poll_interval)

    def _claimable(self, table):
        return or_(
            table.lease_owner.is_(None),
            table.lease_owner == self.name,
            table.lease_expires < _now(),
        )

    def scan(self) -> None:
        """Claim and start every unfinished plan that no live worker holds."""
        for kind in KINDS:
            with self.db.session() as session:
                ids = list(
                    session.scalars(
                        select(kind.table.id).where(
                            kind.table.state.in_(kind.states), self._claimable(kind.table)
                        )
                    )
                )
            for row_id in ids:
                self._start(kind, row_id)

    def _start(self, kind: Kind, row_id: int) -> None:
        thread = self._running.get((kind, row_id))
        if thread is not None and thread.is_alive():
            return
        if not self._claim(kind, row_id):
            return
        thread = threading.Thread(
            target=self._run,
            args=(kind, row_id),
            name=f"{kind.table.__tablename__}-{row_id}",
            daemon=True,
        )
        self._running[(kind, row_id)] = thread
        thread.start()

    def _claim(self, kind: Kind, row_id: int) -> bool:
        """Take the lease in one conditional UPDATE: of racing workers exactly one wins."""
        with self.db.session() as session:
            result = session.execute(
                update(kind.table)
                .where(kind.table.id == row_id, self._claimable(kind.table))
                .values(lease_owner=self.name, lease_expires=_now() + self.lease)
            )
            return result.rowcount == 1

    def renew(self) -> None:
        """Extend the leases of the plans this worker is running."""
        for kind in KINDS:
            alive = [i for (k, i), t in self._running.items() if k is kind and t.is_alive()]
            if not alive:
                continue
            with self.db.session() as session:
                session.execute(
                    update(kind.table)
                    .where(kind.table.id.in_(alive), kind.table.lease_owner == self.name)
                    .values(lease_expires=_now() + self.lease)
                )

    def _run(self, kind: Kind, row_id: int) -> None:
        try:
            kind.run(self.engine, row_id)
        except Exception:
            log.exception(
                "%s %d: lifecycle crashed; it will be resumed", kind.table.__name__, row_id
            )
        finally:
            with self.db.session() as session:
                session.execute(
                    update(kind.table)
                    .where(kind.table.id == row_id, kind.table.lease_owner == self.name)
                    .values(lease_owner=None, lease_expires=None)
                )

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
