"""REST API tokens: admin tokens see everything, project tokens one project's things.

The token is shown once, at creation; only its SHA-256 is stored.

When a revocation takes effect: a process remembers the tokens it verified for at most
`VERIFIED_SECONDS` (1 s), so a busy API looks each token up about once a second rather
than on every request. A revocation, or the deletion of a token's project, committed
by this process forgets everything remembered at once, so the token's next request
here is refused. One committed by another process (another `serve --workers` process,
the CLI on the same database) is seen here within `VERIFIED_SECONDS`.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session

from metalnet import inventory
from metalnet.db.models import ApiToken, Project
from metalnet.errors import Conflict, InputError, NotFound
from metalnet.validate import check_name, is_digits

PREFIX = "mnt_"
VERIFIED_SECONDS = 1.0
VERIFIED_MAX = 1024  # distinct live tokens remembered; unknown tokens never are
MAX_ID = 2**31 - 1  # ids are INTEGER columns: PostgreSQL's 4-byte range bounds them
clock: Callable[[], float] = time.monotonic  # looked up at call time: tests move it


@dataclass(frozen=True)
class Caller:
    """A live token's holder: `project` None for admin tokens."""

    id: int
    name: str
    project: str | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Verified:
    """Tokens this process verified lately, by digest, each with the time it expires.

    `forget()` starts a new generation; a lookup that began in an older generation is
    not remembered, so a request racing a revocation cannot bring the token back.
    Reads take no lock (a dict read is atomic); changes take one.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, digest: str) -> Caller | None:
        entry = self._entries.get(digest)
        if entry is None or entry[0] <= clock():
            return None
        return entry[1]

    def remember(self, digest: str, caller: Caller, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) >= VERIFIED_MAX:
                self._entries.clear()
            self._entries[digest] = (clock() + VERIFIED_SECONDS, caller)

    def forget(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()


VERIFIED = Verified()


def recently_verified(token: str) -> Caller | None:
    """`token`'s holder if this process verified it within VERIFIED_SECONDS, else None
    (look it up with `authenticate`)."""
    return VERIFIED.get(_digest(token))


def create(session: Session, name: str, project: str | None) -> tuple[ApiToken, str]:
    """A new token; `project` None means admin. Returns the row and the secret."""
    check_name(name, "token name")
    row = ApiToken(name=name, role="admin" if project is None else "project")
    if project is not None:
        row.project = inventory.get_project(session, project)
    secret = PREFIX + secrets.token_urlsafe(32)
    row.token_hash = _digest(secret)
    session.add(row)
    session.flush()
    return row, secret


# Built once: a statement's cache key costs more to compute than SQLite takes to run it.
_BY_DIGEST = (
    select(ApiToken.id, ApiToken.name, ApiToken.revoked_at, Project.name)
    .outerjoin(Project, ApiToken.project_id == Project.id)
    .where(ApiToken.token_hash == bindparam("digest"))
)


def authenticate(session: Session, token: str) -> Caller | None:
    """Who holds `token` (its id, name and project), or None when unknown or revoked;
    a live token is remembered for VERIFIED_SECONDS. One indexed query of four columns.
    """
    digest, generation = _digest(token), VERIFIED.generation
    row = session.execute(_BY_DIGEST, {"digest": digest}).first()
    if row is None or row.revoked_at is not None:
        return None
    caller = Caller(id=row.id, name=row.name, project=row[3])
    VERIFIED.remember(digest, caller, generation)
    return caller


def revoke(session: Session, token_id: int | str) -> ApiToken:
    """Revoke by id; refused from the commit on (see the module's docstring)."""
    if isinstance(token_id, str) and not is_digits(token_id):
        raise InputError(f"invalid token id {token_id!r}: expected a number")
    if not 0 < int(token_id) <= MAX_ID:  # the database would refuse to compare it: a 500
        raise NotFound(f"unknown token id {token_id}")
    row = session.get(ApiToken, int(token_id))
    if row is None:
        raise NotFound(f"unknown token id {token_id}")
    if row.revoked_at is not None:
        raise Conflict(f"token {token_id} is already revoked")
    row.revoked_at = datetime.now(UTC)
    return row


@event.listens_for(Session, "after_flush")
def _note_token_changes(session: Session, _context: object) -> None:
    """Mark a transaction that changes a token or deletes a project (and its tokens)."""
    changed = any(isinstance(row, ApiToken) for row in session.dirty) or any(
        isinstance(row, ApiToken | Project) for row in session.deleted
    )
    if changed:
        session.info["tokens_changed"] = True


@event.listens_for(Session, "after_commit")
def _forget_after_commit(session: Session) -> None:
    if session.info.pop("tokens_changed", False):
        VERIFIED.forget()


@event.listens_for(Session, "after_soft_rollback")
def _nothing_changed(session: Session, _transaction: object) -> None:
    session.info.pop("tokens_changed", None)
