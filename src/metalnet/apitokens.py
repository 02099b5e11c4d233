"""REST API tokens: admin tokens see everything, project tokens one project's things.

The token is shown once, at creation; only its SHA-256 is stored. Revocation takes
effect on the next request, since every request looks the token up.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet import inventory
from metalnet.db.models import ApiToken, Project
from metalnet.errors import Conflict, InputError, NotFound
from metalnet.validate import check_name

PREFIX = "mnt_"


@dataclass(frozen=True)
class Caller:
    """A live token's holder: `project` None for admin tokens."""

    id: int
    name: str
    project: str | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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


def authenticate(session: Session, token: str) -> Caller | None:
    """Who holds `token` (its id, name and project), or None when unknown or revoked.

    One indexed query of four columns: every API request runs it, so that revoking a
    token takes effect on the next request.
    """
    query = (
        select(ApiToken.id, ApiToken.name, ApiToken.revoked_at, Project.name)
        .outerjoin(Project, ApiToken.project_id == Project.id)
        .where(ApiToken.token_hash == _digest(token))
    )
    row = session.execute(query).first()
    if row is None or row.revoked_at is not None:
        return None
    return Caller(id=row.id, name=row.name, project=row[3])


def revoke(session: Session, token_id: int | str) -> ApiToken:
    """Revoke by id; the token stops working at once."""
    if isinstance(token_id, str) and not token_id.isdigit():
        raise InputError(f"invalid token id {token_id!r}: expected a number")
    row = session.get(ApiToken, int(token_id))
    if row is None:
        raise NotFound(f"unknown token id {token_id}")
    if row.revoked_at is not None:
        raise Conflict(f"token {token_id} is already revoked")
    row.revoked_at = datetime.now(UTC)
    return row
