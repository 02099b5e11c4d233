"""`metalnet serve --workers N`: several processes answer on one port (PostgreSQL only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from metalnet import apitokens, inventory
from metalnet.config import load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.sim.lab.postgres import free_port

METALNET = str(Path(sys.executable).with_name("metalnet"))


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _seed(url: str) -> str:
    db = Database(load_settings(None, url))
    upgrade(db.engine)
    with db.session() as s:
        inventory.create_project(s, "alpha")
        _row, token = apitokens.create(s, "t", None)
    db.engine.dispose()
    return token


@pytest.mark.postgres
def test_workers_share_one_port_and_stop_together(pg_cluster, tmp_path) -> None:
    url = pg_cluster.new_database()
    token = _seed(url)
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path)}
    server = subprocess.Popen(
        [METALNET, "--db", url, "serve", "--listen", f"127.0.0.1:{port}", "--workers", "3"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/projects", headers=headers).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve --workers 3 never answered"
            time.sleep(0.1)
        helpers = _children(server.pid)
        assert len(helpers) >= 2  # spawn also starts a resource tracker; at least two API
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            answers = [client.get("/v1/projects/alpha").status_code for _ in range(50)]
        assert answers == [200] * 50
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert server.returncode == 0
    deadline = time.monotonic() + 10  # the resource tracker exits when its pipe closes
    while [pid for pid in helpers if _running(pid)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in helpers if _running(pid)] == []


def test_workers_refused_on_sqlite(cli, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert cli("--db", url, "db", "upgrade").exit_code == 0
    result = cli("--db", url, "serve", "--workers", "2")
    assert result.exit_code == 2
    assert "--workers 2 needs PostgreSQL" in result.stderr


def test_port_in_use_is_one_line(cli, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    assert cli("--db", url, "db", "upgrade").exit_code == 0
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = cli("--db", url, "serve", "--listen", f"127.0.0.1:{port}")
    assert result.exit_code == 2
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
