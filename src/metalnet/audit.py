"""The audit log: every change through the CLI or the API, who made it, and how it ended.

Entries are written in their own transaction so that a change that failed (and was
rolled back) is still recorded as attempted.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metalnet.db.engine import Database

log = logging.getLogger(__name__)


def record(db: Database, actor: str, action: str, target: str, ok: bool, detail: str = "") -> None:
    """Append one entry; a database that cannot take it is logged, not fatal."""
    from metalnet.db.models import AuditEntry

    try:
        with db.session() as session:
            session.add(
                AuditEntry(actor=actor, action=action, target=target, ok=ok, detail=detail[:2000])
            )
    except Exception as exc:
        log.warning(
            "audit log unavailable (%s): %s %s by %s not recorded", exc, action, target, actor
        )


@contextmanager
def change(db: Database, actor: str, action: str, target: str) -> Iterator[None]:
    """Record the change in the body as done, or as failed with the error, and re-raise."""
    try:
        yield
    except Exception as exc:
        record(db, actor, action, target, False, str(exc))
        raise
    record(db, actor, action, target, True)


def cli_actor() -> str:
    """Who runs the CLI: the local user (asking costs no database import)."""
    return f"cli:{getpass.getuser()}"
