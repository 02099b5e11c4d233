"""One worker per switch at a time when several share a PostgreSQL database.

The work queue holds `AdvisoryLock.held(switch)` around every transaction. On
PostgreSQL that is a session-level advisory lock: a worker that dies loses its
connection and with it the lock. SQLite means one process, so there it is a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from metalnet.db.engine import Database
from metalnet.retry import Retry

# A database that restarts under a worker is back within seconds; past this budget the
# transaction fails and the queue reports it like any other failed commit.
RECONNECT = Retry(attempts=5, first=2.0, cap=16.0)


class AdvisoryLock:
    """Per-switch mutual exclusion between processes sharing the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def held(self, switch: str) -> Iterator[None]:
        """Hold the switch's lock for the duration of the block (PostgreSQL only)."""
        if self.db.engine.dialect.name != "postgresql":
            yield
            return
        key = {"key": f"metalnet-switch:{switch}"}
        conn = RECONNECT.call(
            lambda: self._locked_connection(key),
            retry_on=(DBAPIError,),
            what=f"advisory lock on switch {switch}",
        )
        try:
            yield
        finally:
            # best effort: a lock dies with its connection, e.g. when the database restarts
            with contextlib.suppress(DBAPIError):
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), key)
            with contextlib.suppress(DBAPIError):
                conn.close()

    def _locked_connection(self, key: dict[str, str]) -> Connection:
        """One try: a new connection that then takes the lock (waiting for its holder)."""
        conn = self.db.engine.connect()
        try:
            conn.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), key)
        except DBAPIError:
            conn.close()
            raise
        return conn
