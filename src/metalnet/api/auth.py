"""Who is calling the REST API: an admin, or one project, identified by a bearer token.

The dashboard's browser sends the same token in an HttpOnly, SameSite=Strict session
cookie instead. A cookie rides along on requests other sites make, so a state-changing
request authenticated by cookie must also carry the CSRF header: a value derived from
the token, which the page reads from a non-HttpOnly cookie and another site cannot know.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from metalnet import apitokens
from metalnet.api.routing import READS_WAIT, run_read
from metalnet.db.engine import Database
from metalnet.errors import MetalnetError
from metalnet.service.base import Forbidden, Principal

__all__ = ["Caller", "Db", "Forbidden", "Principal", "Unauthorized", "principal"]


class Unauthorized(MetalnetError):
    """No token, an unknown one, or a revoked one."""

    code = "unauthorized"


async def database(request: Request) -> Database:
    """The app's database (a coroutine: no I/O, so no thread hop); tells the routes
    whether its reads may wait (`metalnet.api.routing`)."""
    db = request.app.state.db
    READS_WAIT.set(db.reads_wait)
    return db


Db = Annotated[Database, Depends(database)]


SESSION_COOKIE = "metalnet_session"
CSRF_COOKIE = "metalnet_csrf"
CSRF_HEADER = "X-Metalnet-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_value(token: str) -> str:
    """The CSRF value of a session: bound to its token, unguessable without it."""
    return hmac.new(token.encode(), b"metalnet-csrf", hashlib.sha256).hexdigest()


def _token(request: Request, authorization: str | None) -> str:
    """The bearer token if one is sent, else the session cookie's (CSRF-checked)."""
    scheme, _, token = (authorization or "").partition(" ")
    cookie = request.cookies.get(SESSION_COOKIE)
    if authorization is not None or not cookie:
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
        return token.strip()
    sent = request.headers.get(CSRF_HEADER, "").encode()
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
        sent, csrf_value(cookie).encode()
    ):
        raise Forbidden(
            f"a {request.method} with the session cookie needs the {CSRF_HEADER} header"
        )
    return cookie


async def principal(
    db: Db, request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """The token's holder: from the tokens this process verified within the last
    `apitokens.VERIFIED_SECONDS` (no I/O, no thread hop), else looked up in the database
    (a read). See `metalnet.apitokens` for when a revocation takes effect."""
    token = _token(request, authorization)
    caller = apitokens.recently_verified(token)
    if caller is None:
        caller = await run_read(_authenticate, db, token)
    if caller is None:
        raise Unauthorized("unknown or revoked token")
    return Principal(actor=f"api:token-{caller.id}:{caller.name}", project=caller.project)


def _authenticate(db: Database, token: str) -> apitokens.Caller | None:
    with db.session() as session:
        return apitokens.authenticate(session, token)


Caller = Annotated[Principal, Depends(principal)]
