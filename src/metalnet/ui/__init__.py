"""The operator's dashboard under /ui/: static files, and sign-in by API token.

The page is plain HTML, CSS and JavaScript shipped in this package (no CDN, no build
step). It reads and changes everything through the /v1 API, so a project token sees
exactly what the API shows it. Signing in exchanges a token for an HttpOnly,
SameSite=Strict session cookie holding that token, so revoking the token ends the
session at once; `metalnet.api.auth` accepts the cookie and demands the CSRF header
on every state-changing request it authenticates.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from metalnet import apitokens
from metalnet.api.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Caller,
    Db,
    Forbidden,
    Unauthorized,
    csrf_value,
)
from metalnet.api.routing import Route

STATIC = Path(__file__).parent / "static"

# Only the page's own files run; nothing inline, nothing from elsewhere, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=Route)


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    token: str = Field(min_length=1, max_length=256)


def _same_origin(request: Request) -> None:
    """Refuse a sign-in posted from another site (it would sign the victim in as the
    attacker); browsers send Origin on every cross-site POST."""
    origin = request.headers.get("origin")
    # the host alone: behind a TLS-terminating proxy the scheme seen here differs
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden(f"sign-in from origin {origin!r} refused")


@router.get("")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/")
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


@router.post("/session")
def sign_in(body: SignIn, request: Request, db: Db) -> JSONResponse:
    """Check the token, then hand it back as the session cookie with its CSRF value."""
    _same_origin(request)
    with db.session() as s:
        row = apitokens.authenticate(s, body.token)
        if row is None:
            raise Unauthorized("unknown or revoked token")
        who = {"name": row.name, "project": row.project}
    response = JSONResponse(who)
    secure = request.url.scheme == "https"
    common = {"samesite": "strict", "secure": secure, "path": "/"}
    response.set_cookie(SESSION_COOKIE, body.token, httponly=True, **common)
    response.set_cookie(CSRF_COOKIE, csrf_value(body.token), httponly=False, **common)
    return response


@router.get("/session")
def whoami(who: Caller) -> dict:
    """Who the session (or bearer token) is: the page shows it and scopes its views."""
    return {"actor": who.actor, "project": who.project, "admin": who.admin}


@router.delete("/session", status_code=204)
def sign_out() -> Response:
    """Forget the session in this browser (the token itself stays valid until revoked)."""
    response = Response(status_code=204)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", samesite="strict")
    return response


def mount(app: FastAPI) -> None:
    """Serve the dashboard on `app` under /ui/."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
