"""Errors as JSON with a stable code and a message naming the bad value; body size cap."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metalnet.api.auth import Forbidden, Unauthorized
from metalnet.errors import Conflict, InputError, MetalnetError, NotFound
from metalnet.service.models import validation_message
from metalnet.validate import is_digits

MAX_BODY = 64 * 1024
STATUS = {InputError: 400, Unauthorized: 401, Forbidden: 403, NotFound: 404, Conflict: 409}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The one error shape every endpoint uses."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    # the media type is explicit: routes that answer text (iPXE scripts) still err in JSON
    status: {
        "model": ErrorBody,
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for status, description in (
        (400, "A value is malformed or out of range."),
        (401, "No token, or an unknown or revoked one."),
        (403, "The token may not do this."),
        (404, "No such thing (or not the caller's)."),
        (409, "The request contradicts what the inventory holds."),
        (413, "The request body is too large."),
        (422, "The request does not match its schema."),
        (502, "A switch or BMC behind the controller failed."),
    )
}


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The one error shape every endpoint uses."""
    return ErrorBody(error=ErrorDetail(code=code, message=message)).model_dump()


def _status(exc: MetalnetError) -> int:
    for cls, status in STATUS.items():
        if isinstance(exc, cls):
            return status
    return 502  # a switch or BMC failed behind us


async def metalnet_error(_request: Request, exc: MetalnetError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, str(exc)), status_code=_status(exc))


async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(error_body("bad_input", validation_message(exc.errors())), status_code=422)


class BodyLimit:
    """Refuse request bodies over MAX_BODY with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (
            not is_digits(length.decode("latin-1")) or int(length) > MAX_BODY
        ):
            await self._refuse(send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(send)

    @staticmethod
    async def _refuse(send: Send) -> None:
        response = JSONResponse(
            error_body("too_large", f"request body over {MAX_BODY} bytes"), status_code=413
        )
        await response({"type": "http"}, _empty_receive, send)


class _TooLarge(Exception):
    pass


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


def install(app: FastAPI) -> None:
    """Register the handlers and the body cap on `app`."""
    app.add_exception_handler(MetalnetError, metalnet_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(BodyLimit)
