"""The worker: finds instances with unfinished lifecycles and runs each in a thread.

On start it picks up whatever a previous controller left half-done, which is how a
kill -9 is recovered. One thread per instance lets a mass deployment's port moves
meet in the switch queue, where they are coalesced into one commit per switch.

Several workers (processes, machines) may share one database: an instance is carried
out only by the worker holding its lease. Leases are renewed while the lifecycle runs
and expire when a worker dies, so another worker takes the instance over and resumes
it from the recorded step; no lifecycle is ever run by two workers at once.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update

from metalnet.db.models import Instance
from metalnet.lifecycle.engine import Engine
from metalnet.lifecycle.states import PLANS

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


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
        self._running: dict[int, threading.Thread] = {}
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

    def _claimable(self):
        return or_(
            Instance.lease_owner.is_(None),
            Instance.lease_owner == self.name,
            Instance.lease_expires < _now(),
        )

    def scan(self) -> None:
        """Claim and start every unfinished instance that no live worker holds."""
        with self.db.session() as session:
            ids = list(
                session.scalars(
                    select(Instance.id).where(Instance.state.in_(tuple(PLANS)), self._claimable())
                )
            )
        for instance_id in ids:
            thread = self._running.get(instance_id)
            if thread is not None and thread.is_alive():
                continue
            if not self._claim(instance_id):
                continue
            thread = threading.Thread(
                target=self._run, args=(instance_id,), name=f"instance-{instance_id}", daemon=True
            )
            self._running[instance_id] = thread
            thread.start()

    def _claim(self, instance_id: int) -> bool:
        """Take the lease in one conditional UPDATE: of racing workers exactly one wins."""
        with self.db.session() as session:
            result = session.execute(
                update(Instance)
                .where(Instance.id == instance_id, self._claimable())
                .values(lease_owner=self.name, lease_expires=_now() + self.lease)
            )
            return result.rowcount == 1

    def renew(self) -> None:
        """Extend the leases of the lifecycles this worker is running."""
        alive = [i for i, t in self._running.items() if t.is_alive()]
        if not alive:
            return
        with self.db.session() as session:
            session.execute(
                update(Instance)
                .where(Instance.id.in_(alive), Instance.lease_owner == self.name)
                .values(lease_expires=_now() + self.lease)
            )

    def _run(self, instance_id: int) -> None:
        try:
            self.engine.run(instance_id)
        except Exception:
            log.exception("instance %d: lifecycle crashed; it will be resumed", instance_id)
        finally:
            with self.db.session() as session:
                session.execute(
                    update(Instance)
                    .where(Instance.id == instance_id, Instance.lease_owner == self.name)
                    .values(lease_owner=None, lease_expires=None)
                )

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
