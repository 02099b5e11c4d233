"""Fixtures for the agent tests: file disks, an image server, and the real controller.

The controller is metalnet's own application (`api.app.create_app`, whose agent
router is the one `metalnet serve` runs) over a migrated SQLite database, served by
uvicorn on a free 127.0.0.1 port. In front of it sits a thin ASGI recorder that logs
each request (so tests can see every progress report, not only the last one stored)
and can answer 503 to the first requests, as a restarting controller's proxy would.
Images come from a separate HTTP server, as in a real installation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from metalnet import inventory
from metalnet.api.app import create_app
from metalnet.config import load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.db.models import AgentTask, Instance, Node
from metalnet.lifecycle import tokens

MIB = 1 << 20
SHA = "ab" * 32


@dataclass
class Recorder:
    """An ASGI wrapper around the controller: records requests, can fail the first ones."""

    app: object = None
    failures: int = 0
    requests: list[tuple[str, str, int, dict | None]] = field(default_factory=list)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if self.failures:
            self.failures -= 1
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"restarting"})
            return
        payload = json.loads(body) if body else None

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        async def record(message):
            # Recorded before the client can see the answer, so a client that has its
            # answer finds its request listed, in the order it made them.
            if message["type"] == "http.response.start":
                self.requests.append((scope["method"], scope["path"], message["status"], payload))
            await send(message)

        await self.app(scope, replay, record)


@dataclass
class Controller:
    """The running controller and image server of one test, with helpers to set up work."""

    url: str
    images_url: str
    db: Database
    recorder: Recorder
    images: dict[str, bytes]
    redirects: dict[str, str]
    image_hosts: list[str]  # the Host header of every request to the image server

    def node(self, name: str) -> str:
        """Enrol a node (without cabling: the agent API needs none) and issue its token."""
        with self.db.session() as s:
            node = s.scalar(select(Node).where(Node.name == name))
            if node is None:
                node = Node(name=name, bmc_url=f"redfish://bmc-{name}.invalid")
                s.add(node)
            return tokens.issue(node)

    def give(self, node: str, kind: str, image_url: str | None = None, sha256: str | None = None):
        """Queue an agent task for `node`, as the lifecycle's pxe_boot step does; its id."""
        with self.db.session() as s:
            db_node = s.scalar(select(Node).where(Node.name == node))
            net = inventory.get_network(s, "p", "net")
            inst = Instance(
                name=f"i{db_node.id}",
                project_id=net.project_id,
                network_id=net.id,
                node_id=db_node.id,
                image_url=image_url or "http://unused/",
                sha256=sha256 or SHA,
            )
            s.add(inst)
            s.flush()
            task = AgentTask(
                node_id=db_node.id,
                instance_id=inst.id,
                kind=kind,
                image_url=image_url,
                sha256=sha256,
            )
            s.add(task)
            s.flush()
            return task.id

    def task(self, task_id: int) -> AgentTask:
        """The task as the controller stored it."""
        with self.db.session() as s:
            task = s.get(AgentTask, task_id)
            s.expunge(task)
            return task

    def add_image(self, name: str, data: bytes) -> tuple[str, str]:
        """Serve `data` at /images/`name` of the image server; return its URL and sha256."""
        self.images[name] = data
        return f"{self.images_url}/images/{name}", hashlib.sha256(data).hexdigest()

    def redirect(self, name: str, to: str) -> str:
        """A URL on the image server that redirects to `to`."""
        self.redirects[name] = to
        return f"{self.images_url}/go/{name}"

    def polls(self) -> int:
        return sum(1 for method, *_ in self.recorder.requests if method == "GET")

    def progress(self, task_id: int) -> list[dict]:
        return [
            body
            for method, path, status, body in self.recorder.requests
            if path.endswith(f"/tasks/{task_id}/progress") and status == 204
        ]


def _serve(app) -> tuple[str, uvicorn.Server, threading.Thread, socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = threading.Event()
    for _ in range(500):
        if server.started:
            break
        if not thread.is_alive():
            raise RuntimeError("test server did not start")
        deadline.wait(0.01)
    else:
        raise RuntimeError("test server did not start within 5 s")
    return f"http://127.0.0.1:{port}", server, thread, sock


def _image_app(images: dict[str, bytes], redirects: dict[str, str], hosts: list[str]) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def record_host(request: Request, call_next):
        hosts.append(request.headers.get("host", ""))
        return await call_next(request)

    @app.get("/images/{name}")
    def get_image(name: str) -> Response:
        if name not in images:
            raise HTTPException(404, "no such image")
        return Response(images[name], media_type="application/octet-stream")

    @app.get("/encoded/{name}")
    def get_encoded(name: str) -> Response:
        """A .gz file labelled `Content-Encoding: gzip` whatever the client accepts, as
        Apache serves one with mod_mime's `AddEncoding x-gzip .gz` (its manual's
        example: "marked as encoded using the x-gzip encoding")."""
        headers = {"Content-Encoding": "gzip"}
        return Response(images[name], media_type="application/octet-stream", headers=headers)

    @app.get("/go/{name}")
    def go(name: str) -> RedirectResponse:
        return RedirectResponse(redirects[name], status_code=302)

    return app


@pytest.fixture(scope="session")
def _servers() -> Iterator[tuple[str, str, Recorder, dict, dict]]:
    recorder = Recorder()
    images: dict[str, bytes] = {}
    redirects: dict[str, str] = {}
    hosts: list[str] = []
    running = [_serve(recorder), _serve(_image_app(images, redirects, hosts))]
    yield running[0][0], running[1][0], recorder, images, redirects, hosts
    for _url, server, thread, sock in running:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


@pytest.fixture
def controller(request, _servers, tmp_path: Path) -> Iterator[Controller]:
    """The real controller app over a fresh database (SQLite, or PostgreSQL when the
    test parametrizes this fixture indirectly with "postgres")."""
    url, images_url, recorder, images, redirects, hosts = _servers
    if getattr(request, "param", "sqlite") == "postgres":
        database_url = request.getfixturevalue("pg_cluster").new_database()
    else:
        database_url = f"sqlite:///{tmp_path / 'metalnet.db'}"
    base = load_settings(None, database_url)
    settings = dataclasses.replace(
        base, controller_listen=url.removeprefix("http://"), image_server=images_url
    )
    db = Database(settings)
    upgrade(db.engine)
    with db.session() as s:
        inventory.create_project(s, "p")
        inventory.create_network(s, settings, "p", "net", "10.9.0.0/24")
    recorder.app, recorder.failures, recorder.requests = create_app(db), 0, []
    images.clear()
    redirects.clear()
    hosts.clear()
    yield Controller(url, images_url, db, recorder, images, redirects, hosts)
    db.engine.dispose()


@pytest.fixture
def make_disk(tmp_path: Path):
    """Create a file disk of `size` bytes, each byte `fill`, or random like a used disk."""

    def make(size: int = 8 * MIB, fill: int | None = None) -> Path:
        path = tmp_path / f"disk{len(list(tmp_path.glob('disk*')))}.img"
        path.write_bytes(os.urandom(size) if fill is None else bytes([fill]) * size)
        return path

    return make
