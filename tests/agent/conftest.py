"""Fixtures for the agent tests: file disks and a small protocol controller over real HTTP.

The controller here is a stand-in that implements the agent protocol with an
in-memory task table and token -> node map, so the agent is tested over a real
socket with the real payload models. The real controller (FastAPI router backed
by the database) is tested by the lifecycle tests.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import pytest
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response

from metalnet.agent.protocol import (
    PROGRESS_ROUTE,
    RESULT_ROUTE,
    TASK_ROUTE,
    Progress,
    Task,
    TaskResult,
)

MIB = 1 << 20


@dataclass
class ControllerState:
    """What the stand-in controller holds and records; tests set it up and inspect it."""

    tokens: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    empty_polls: int = 0
    """Answer 204 this many times before handing out a node's task."""
    failures: int = 0
    """Answer 503 to this many requests first, to exercise the agent's retries."""
    images: dict[str, bytes] = field(default_factory=dict)
    polls: int = 0
    progress: list[tuple[str, int, Progress]] = field(default_factory=list)
    results: list[tuple[str, int, TaskResult]] = field(default_factory=list)


def _state(request: Request) -> ControllerState:
    return request.app.state.controller


State = Annotated[ControllerState, Depends(_state)]


def _authorized_node(
    node: str, st: State, authorization: Annotated[str | None, Header()] = None
) -> str:
    """401 for a missing/unknown token, 403 for another node's token, like the real one."""
    scheme, _, token = (authorization or "").partition(" ")
    owner = st.tokens.get(token) if scheme == "Bearer" else None
    if owner is None:
        raise HTTPException(401, "missing or unknown token")
    if owner != node:
        raise HTTPException(403, f"token belongs to node {owner}, not {node}")
    if st.failures:
        st.failures -= 1
        raise HTTPException(503, "controller restarting")
    return node


Node = Annotated[str, Depends(_authorized_node)]


def _current_task(st: ControllerState, node: str, task_id: int) -> None:
    if node not in st.tasks or st.tasks[node].id != task_id:
        raise HTTPException(404, f"no task {task_id} for node {node}")


def _build_app() -> FastAPI:
    app = FastAPI()

    @app.get(TASK_ROUTE)
    def get_task(node: Node, st: State) -> Response:
        st.polls += 1
        if st.polls <= st.empty_polls or node not in st.tasks:
            return Response(status_code=204)
        return Response(st.tasks[node].model_dump_json(), media_type="application/json")

    @app.post(PROGRESS_ROUTE, status_code=204)
    def post_progress(task_id: int, body: Progress, node: Node, st: State) -> None:
        _current_task(st, node, task_id)
        st.progress.append((node, task_id, body))

    @app.post(RESULT_ROUTE, status_code=204)
    def post_result(task_id: int, body: TaskResult, node: Node, st: State) -> None:
        _current_task(st, node, task_id)
        st.results.append((node, task_id, body))

    @app.get("/images/{name}")
    def get_image(name: str, st: State) -> Response:
        if name not in st.images:
            raise HTTPException(404, "no such image")
        return Response(st.images[name], media_type="application/octet-stream")

    return app


@dataclass
class Controller:
    """A running stand-in controller: its base URL and its (fresh per test) state."""

    url: str
    state: ControllerState

    def add_image(self, name: str, data: bytes) -> tuple[str, str]:
        """Serve `data` at /images/`name`; return its URL and sha256."""
        self.state.images[name] = data
        return f"{self.url}/images/{name}", hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def _controller_server() -> Iterator[tuple[str, FastAPI]]:
    app = _build_app()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("test controller did not start")
        threading.Event().wait(0.01)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def controller(_controller_server: tuple[str, FastAPI]) -> Controller:
    """The stand-in controller with empty state for this test."""
    url, app = _controller_server
    app.state.controller = ControllerState()
    return Controller(url, app.state.controller)


@pytest.fixture
def make_disk(tmp_path: Path):
    """Create a file disk of `size` bytes, each byte `fill`, or random like a used disk."""

    def make(size: int = 8 * MIB, fill: int | None = None) -> Path:
        path = tmp_path / f"disk{len(list(tmp_path.glob('disk*')))}.img"
        path.write_bytes(os.urandom(size) if fill is None else bytes([fill]) * size)
        return path

    return make
