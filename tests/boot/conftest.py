"""Fixtures: a database with enrolled nodes and boot settings, and a controller over it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from bootworld import MACS, STARTUP_DEADLINE_SECONDS, BootWorld, free_port, write_config

from metalnet import inventory
from metalnet.api.app import create_app
from metalnet.config import load_settings
from metalnet.db.engine import Database, upgrade


@pytest.fixture
def world(tmp_path: Path) -> Iterator[BootWorld]:
    """Two enrolled nodes (n1, n2) on a fake switch, one project network; no tasks."""
    config = write_config(tmp_path, free_port())
    db = Database(load_settings(config))
    upgrade(db.engine)
    with db.session() as s:
        inventory.create_project(s, "p")
        inventory.create_network(s, db.settings, "p", "net", "10.1.0.0/24")
        inventory.add_switch(s, "sw", "fake", "127.0.0.1:830", "u", "switch-secret")
        for i, (name, mac) in enumerate(MACS.items(), 1):
            inventory.add_node(s, db.settings, name, mac, "sw", f"eth{i}", "ipmi://127.0.0.1:623")
    yield BootWorld(config, db)
    db.engine.dispose()


@pytest.fixture
def controller(world: BootWorld) -> Iterator[BootWorld]:
    """The controller's HTTP app (uvicorn) on the port agent_url names."""
    port = int(world.db.settings.controller_url.rsplit(":", 1)[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(world.db), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    while not server.started:
        assert time.monotonic() < deadline, "controller did not start"
        time.sleep(0.01)
    world.url = world.db.settings.controller_url
    yield world
    server.should_exit = True
    thread.join(10)
