"""Who is calling the REST API: an admin, or one project, identified by a bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from metalnet import apitokens
from metalnet.db.engine import Database
from metalnet.errors import MetalnetError
from metalnet.service.base import Forbidden, Principal

__all__ = ["Caller", "Db", "Forbidden", "Principal", "Unauthorized", "principal"]


class Unauthorized(MetalnetError):
    """No token, an unknown one, or a revoked one."""

    code = "unauthorized"


def database(request: Request) -> Database:
    """The app's database."""
    return request.app.state.db


Db = Annotated[Database, Depends(database)]


def principal(db: Db, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """Look the token up on every request, so a revoked token stops working at once."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    with db.session() as session:
        caller = apitokens.authenticate(session, token.strip())
    if caller is None:
        raise Unauthorized("unknown or revoked token")
    return Principal(actor=f"api:token-{caller.id}:{caller.name}", project=caller.project)


Caller = Annotated[Principal, Depends(principal)]
