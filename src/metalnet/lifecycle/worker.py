"""The worker: finds instances with unfinished lifecycles and runs each in a thread.

On start it picks up whatever a previous controller left half-done, which is how a
kill -9 is recovered. One thread per instance lets a mass deployment's port moves
meet in the switch queue, where they are coalesced into one commit per switch.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select

from metalnet.db.models import Instance
from metalnet.lifecycle.engine import PLANS, Engine

log = logging.getLogger(__name__)


class Worker:
    """Polls the database for work; `stop()` waits for running lifecycles to reach a step end."""

    def __init__(self, engine: Engine, poll_interval: float | None = None) -> None:
        self.engine = engine
        self.db = engine.db
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
                self.scan()
            except Exception:
                log.exception("lifecycle worker: scan failed; retrying")
            self._stop.wait(self.poll_interval)

    def scan(self) -> None:
        """Start a thread for every unfinished instance not already being worked."""
        with self.db.session() as session:
            ids = list(session.scalars(select(Instance.id).where(Instance.state.in_(tuple(PLANS)))))
        for instance_id in ids:
            thread = self._running.get(instance_id)
            if thread is not None and thread.is_alive():
                continue
            thread = threading.Thread(
                target=self._run, args=(instance_id,), name=f"instance-{instance_id}", daemon=True
            )
            self._running[instance_id] = thread
            thread.start()

    def _run(self, instance_id: int) -> None:
        try:
            self.engine.run(instance_id)
        except Exception:
            log.exception("instance %d: lifecycle crashed; it will be resumed", instance_id)

    def busy(self) -> bool:
        """True while any lifecycle thread runs."""
        return any(t.is_alive() for t in self._running.values())

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
