"""REST API tokens: admin tokens see everything, project tokens one project's things.

The token is shown once, at creation; only its SHA-256 is stored. Revocation takes
effect on the next request, since every request looks the token up.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet import inventory
from metalnet.db.models import ApiToken
from metalnet.errors import Conflict, InputError, NotFound
from metalnet.validate import check_name

PREFIX = "mnt_"


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


def authenticate(session: Session, token: str) -> ApiToken | None:
    """The live token row for `token`, or None (unknown or revoked)."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    return row


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
