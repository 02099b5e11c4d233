"""The controller's side of the agent protocol (see metalnet.agent.protocol).

A node authenticates with the token issued when it was booted into the ramdisk; the
token opens only that node's task, and only while the node has one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet.agent.protocol import (
    PROGRESS_ROUTE,
    RESULT_ROUTE,
    TASK_ROUTE,
    Progress,
    Task,
    TaskResult,
)
from metalnet.api.routing import Route
from metalnet.db.models import AgentTask, Node
from metalnet.lifecycle import tokens
from metalnet.lifecycle.states import OPEN_TASK, TaskState

router = APIRouter(tags=["agent"], route_class=Route)


async def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str:
    """The bearer token of the request, or 401 (a coroutine: no I/O, so no thread hop)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "missing bearer token")
    return token


Token = Annotated[str, Depends(bearer_token)]


@contextmanager
def transaction(request: Request, node: str, token: str) -> Iterator[tuple[Session, Node]]:
    """The request's transaction and the node the token belongs to (the node in the path).

    The transaction is committed when the block ends, before the endpoint answers: an
    agent told its report was taken can rely on it being stored (a commit that fails
    is a 500, which the agent retries).
    """
    with request.app.state.db.session() as db:
        owner = tokens.owner(db, token)
        if owner is None:
            raise HTTPException(401, "unknown or revoked token")
        if owner.name != node:
            raise HTTPException(403, f"token belongs to node {owner.name}, not {node}")
        yield db, owner


def _task(db: Session, node: Node, task_id: int) -> AgentTask:
    task = db.get(AgentTask, task_id)
    if task is None or task.node_id != node.id:
        raise HTTPException(404, f"node {node.name} has no task {task_id}")
    if task.state not in OPEN_TASK:
        raise HTTPException(409, f"task {task_id} is already {task.state}")
    return task


@router.get(TASK_ROUTE, response_model=Task, responses={204: {"description": "no task yet"}})
def get_task(node: str, token: Token, request: Request) -> Task | Response:
    """The node's open task (an agent that restarted gets its running task again)."""
    with transaction(request, node, token) as (db, owner):
        task = db.scalar(
            select(AgentTask)
            .where(AgentTask.node_id == owner.id, AgentTask.state.in_(OPEN_TASK))
            .order_by(AgentTask.id)
        )
        if task is None:
            return Response(status_code=204)
        task.state = TaskState.RUNNING
        policy = request.app.state.db.settings.image_policy
        return Task(
            id=task.id,
            kind=task.kind,
            image_url=task.image_url,
            sha256=task.sha256,
            image_allow=policy.allow if task.image_url else (),
            image_deny=policy.deny if task.image_url else (),
        )


@router.post(PROGRESS_ROUTE, status_code=204)
def post_progress(node: str, task_id: int, body: Progress, token: Token, request: Request) -> None:
    """Record how far the agent got, for `instance show` and step timeouts' messages."""
    with transaction(request, node, token) as (db, owner):
        task = _task(db, owner, task_id)
        task.phase, task.done_bytes = body.phase, body.done_bytes
        task.total_bytes = body.total_bytes


@router.post(RESULT_ROUTE, status_code=204)
def post_result(node: str, task_id: int, body: TaskResult, token: Token, request: Request) -> None:
    """The task's outcome; the lifecycle step waiting on it moves on."""
    with transaction(request, node, token) as (db, owner):
        task = _task(db, owner, task_id)
        task.state = TaskState.DONE if body.ok else TaskState.FAILED
        task.message = body.message
        task.done_bytes = body.bytes
        task.finished_at = datetime.now(UTC)
