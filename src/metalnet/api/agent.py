"""The controller's side of the agent protocol (see metalnet.agent.protocol).

A node authenticates with the token issued when it was booted into the ramdisk; the
token opens only that node's task, and only while the node has one.
"""

from __future__ import annotations

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
from metalnet.db.models import AgentTask, Node
from metalnet.lifecycle import tokens

router = APIRouter(tags=["agent"])


def session(request: Request):
    """A database transaction per request."""
    with request.app.state.db.session() as s:
        yield s


DbSession = Annotated[Session, Depends(session)]


def authorized_node(
    node: str, db: DbSession, authorization: Annotated[str | None, Header()] = None
) -> Node:
    """The node the bearer token belongs to, which must be the node in the path."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "missing bearer token")
    owner = tokens.owner(db, token)
    if owner is None:
        raise HTTPException(401, "unknown or revoked token")
    if owner.name != node:
        raise HTTPException(403, f"token belongs to node {owner.name}, not {node}")
    return owner


AgentNode = Annotated[Node, Depends(authorized_node)]


def _task(db: Session, node: Node, task_id: int) -> AgentTask:
    task = db.get(AgentTask, task_id)
    if task is None or task.node_id != node.id:
        raise HTTPException(404, f"node {node.name} has no task {task_id}")
    if task.state not in ("pending", "running"):
        raise HTTPException(409, f"task {task_id} is already {task.state}")
    return task


@router.get(TASK_ROUTE, response_model=Task, responses={204: {"description": "no task yet"}})
def get_task(node: AgentNode, db: DbSession) -> Task | Response:
    """The node's open task (an agent that restarted gets its running task again)."""
    task = db.scalar(
        select(AgentTask)
        .where(AgentTask.node_id == node.id, AgentTask.state.in_(("pending", "running")))
        .order_by(AgentTask.id)
    )
    if task is None:
        return Response(status_code=204)
    task.state = "running"
    return Task(id=task.id, kind=task.kind, image_url=task.image_url, sha256=task.sha256)


@router.post(PROGRESS_ROUTE, status_code=204)
def post_progress(node: AgentNode, task_id: int, body: Progress, db: DbSession) -> None:
    """Record how far the agent got, for `instance show` and step timeouts' messages."""
    task = _task(db, node, task_id)
    task.phase, task.done_bytes, task.total_bytes = body.phase, body.done_bytes, body.total_bytes


@router.post(RESULT_ROUTE, status_code=204)
def post_result(node: AgentNode, task_id: int, body: TaskResult, db: DbSession) -> None:
    """The task's outcome; the lifecycle step waiting on it moves on."""
    task = _task(db, node, task_id)
    task.state = "done" if body.ok else "failed"
    task.message = body.message
    task.done_bytes = body.bytes
    task.finished_at = datetime.now(UTC)
