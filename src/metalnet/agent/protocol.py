"""The agent <-> controller HTTP protocol: payload models and URL paths.

Both sides import this module (the agent in the ramdisk, the controller's FastAPI
router), so a field added or renamed on one side cannot silently drift from the
other. The models are strict and forbid unknown fields: a controller and an agent
from different releases fail loudly on the first request instead of half-working.

Every request carries `Authorization: Bearer <token>`; the token is per node, and
the controller answers 401 for a bad or missing token and 403 when the token
belongs to another node.

    GET  /agent/v1/nodes/{node}/task                  -> 200 Task | 204 (no task yet)
    POST /agent/v1/nodes/{node}/tasks/{id}/progress   Progress   -> 204
    POST /agent/v1/nodes/{node}/tasks/{id}/result     TaskResult -> 204
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, model_validator

PREFIX = "/agent/v1"
TASK_ROUTE = PREFIX + "/nodes/{node}/task"
PROGRESS_ROUTE = PREFIX + "/nodes/{node}/tasks/{task_id}/progress"
RESULT_ROUTE = PREFIX + "/nodes/{node}/tasks/{task_id}/result"

TaskKind = Literal["deploy", "erase"]
Phase = Literal["download", "write", "verify", "erase"]
ImageFormat = Literal["raw", "gzip", "xz"]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
ByteCount = Annotated[int, Field(ge=0)]


class _Message(BaseModel):
    """Base of every payload: strict types, no unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Task(_Message):
    """What the controller wants done to the node's disk.

    A deploy names the image and its sha256; an erase names neither, so a
    malformed task is rejected by whichever side builds it, not by the disk code.
    """

    id: Annotated[int, Field(ge=1)]
    kind: TaskKind
    image_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    sha256: Sha256 | None = None
    image_allow: tuple[str, ...] = ()
    """Where the image and its redirects may come from (`validate.ImagePolicy.allow`)."""
    image_deny: tuple[str, ...] = ()
    """Endpoints never fetched from: the controller's own (`validate.ImagePolicy.deny`)."""

    @model_validator(mode="after")
    def _image_matches_kind(self) -> Task:
        has_image = self.image_url is not None and self.sha256 is not None
        if self.kind == "deploy" and not has_image:
            raise ValueError("a deploy task needs image_url and sha256")
        if self.kind == "erase" and (self.image_url is not None or self.sha256 is not None):
            raise ValueError("an erase task takes no image_url or sha256")
        return self


class Progress(_Message):
    """How far the running task is; `total_bytes` is 0 while the total is unknown
    (an image served without Content-Length)."""

    phase: Phase
    done_bytes: ByteCount
    total_bytes: ByteCount

    @model_validator(mode="after")
    def _done_within_total(self) -> Progress:
        if self.total_bytes and self.done_bytes > self.total_bytes:
            raise ValueError("done_bytes exceeds total_bytes")
        return self


class TaskResult(_Message):
    """How the task ended. `message` names the cause on failure; `bytes` counts what
    was written and `sha256` is its digest, read back (None when nothing was hashed).

    A deployed compressed image adds its format and `image_bytes`, the size
    downloaded. Both are absent otherwise and the agent leaves absent fields out of
    the JSON, so a raw deploy's result is the same message as before they existed.
    """

    ok: bool
    message: str
    bytes: ByteCount
    sha256: Sha256 | None = None
    image_format: ImageFormat | None = None
    image_bytes: ByteCount | None = None


def task_path(node: str) -> str:
    """Path the agent polls for its node's task."""
    return TASK_ROUTE.format(node=quote(node, safe=""))


def progress_path(node: str, task_id: int) -> str:
    """Path the agent posts `Progress` to while task `task_id` runs."""
    return PROGRESS_ROUTE.format(node=quote(node, safe=""), task_id=task_id)


def result_path(node: str, task_id: int) -> str:
    """Path the agent posts the final `TaskResult` of task `task_id` to."""
    return RESULT_ROUTE.format(node=quote(node, safe=""), task_id=task_id)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header that identifies a node to the controller."""
    return {"Authorization": f"Bearer {token}"}
