"""A running REST API (uvicorn on a free port) over a fresh database with two tenants."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from metalnet import apitokens, inventory
from metalnet.api.app import create_app
from metalnet.config import Settings, load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.lifecycle import instances

SHA = "a" * 64


@dataclass
class Api:
    """Base URL, tokens per role, and the database behind it."""

    url: str
    tokens: dict[str, str]
    db: Database
    token_ids: dict[str, int]

    def call(self, role: str | None, method: str, path: str, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_settings(database_url: str) -> Settings:
    """Defaults, with the image hosts the tests' instances name allowed."""
    return dataclasses.replace(load_settings(None, database_url), image_allow=("img", "i"))


def _seed(db: Database) -> tuple[dict[str, str], dict[str, int]]:
    tokens, ids = {}, {}
    with db.session() as s:
        for project, cidr in (("a", "10.1.0.0/24"), ("b", "10.2.0.0/24")):
            inventory.create_project(s, project)
            inventory.create_network(s, db.settings, project, "net", cidr)
        inventory.add_switch(s, "sw", "fake", "127.0.0.1:830", "u", "switch-secret")
        for i in (1, 2, 3):
            inventory.add_node(
                s,
                db.settings,
                f"n{i}",
                f"52:54:00:00:00:0{i}",
                "sw",
                f"eth{i}",
                f"ipmi://127.0.1.{i}:623",
                "admin",
                "bmc-secret",
                initial_erase=False,
            )
        for name, project, node in (("ia", "a", "n1"), ("ib", "b", "n2")):
            image = f"http://img/{project}"
            instances.create_instance(
                s, name, project, "net", node, image, SHA, settings=db.settings
            )
        for role, project in (("admin", None), ("a", "a"), ("b", "b")):
            row, tokens[role] = apitokens.create(s, f"t-{role}", project)
            s.flush()
            ids[role] = row.id
    return tokens, ids


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> tuple[Path, dict[str, str], dict[str, int]]:
    """A migrated, seeded SQLite file made once; each test serves a copy of it."""
    path = tmp_path_factory.mktemp("api") / "template.db"
    db = Database(api_settings(f"sqlite:///{path}"))
    upgrade(db.engine)
    tokens, ids = _seed(db)
    db.engine.dispose()
    return path, tokens, ids


@contextmanager
def served(db: Database) -> Iterator[str]:
    """The app over `db` served by uvicorn on a free loopback port; yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(db), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def serve():
    """`served`, for tests that serve a database of their own."""
    return served


@pytest.fixture
def api(tmp_path, template) -> Iterator[Api]:
    source, tokens, ids = template
    apitokens.VERIFIED.forget()  # as a new server process: every test's copy has the same tokens
    shutil.copy(source, tmp_path / "api.db")
    db = Database(api_settings(f"sqlite:///{tmp_path / 'api.db'}"))
    with served(db) as url:
        yield Api(url, tokens, db, ids)
    db.engine.dispose()
