"""The switch change log: every transaction attempt, kept in the database and counted.

The work queue hands each attempt here as it ends; `metalnet switch log` reads it back.
"""

from __future__ import annotations

from sqlalchemy import select

from metalnet import metrics
from metalnet.db.engine import Database
from metalnet.db.models import Switch, SwitchChange
from metalnet.switches.queue import CommitRecord


class ChangeLog:
    """Writes one row per transaction attempt and updates the commit metrics."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, commit: CommitRecord) -> None:
        """Journal one attempt, good or failed."""
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
                    ports=[
                        {"interface": c.interface, "vlan": c.vlan, "enabled": c.enabled}
                        for c in commit.changes
                    ],
                    ok=commit.ok,
                    seconds=commit.seconds,
                    message=commit.message,
                )
            )
