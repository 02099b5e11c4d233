"""`metalnet lab up` / `lab down` as a user runs them: real processes, real CLI, real API.

The lab runs as a subprocess; the test uses only what lab.json says, the CLI (on the
lab's database, as the README tells a user to) and the HTTP API with a project token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

LAB_READY_SECONDS = 120.0
SPAWN_SECONDS = 180.0
STOP_SECONDS = 60.0
SMALL_LAB = ("--nodes", "2", "--commit-latency", "0.1")


def metalnet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metalnet", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (children of children included)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate, seconds: float, what: str, interval: float = 0.2):
    """Poll `predicate` until it returns something true; fail naming `what` at the deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    pytest.fail(f"{what} not within {seconds:g}s")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`metalnet lab up` with two nodes; killed at the end if the test left it running."""
    directory = tmp_path / "lab"
    with (tmp_path / "lab-up.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "metalnet", "lab", "up", "--dir", str(directory), *SMALL_LAB],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, directory
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def read_info(process: subprocess.Popen[bytes], directory: Path) -> dict | None:
    assert process.poll() is None, f"lab up exited with {process.returncode}"
    info = directory / "lab.json"
    return json.loads(info.read_text()) if info.exists() else None


def test_lab_up_spawns_through_the_api_and_lab_down_stops_everything(lab) -> None:
    process, directory = lab
    info = wait_for(lambda: read_info(process, directory), LAB_READY_SECONDS, "lab.json")
    assert {s["name"] for s in info["switches"]} == {"tor1"}
    assert [n["name"] for n in info["nodes"]] == ["n1", "n2"]
    env = {**os.environ, "METALNET_DATABASE_URL": info["database_url"]}
    env.pop("METALNET_CONFIG", None)
    again = metalnet("lab", "up", "--dir", str(directory))
    assert again.returncode == 2
    assert f"a lab is already running in {str(directory)!r}" in again.stderr

    # What the user does by hand: a project, its network and token, with the CLI.
    assert metalnet("project", "create", "acme", env=env).returncode == 0
    created = metalnet(
        "network", "create", "web", "--project", "acme", "--cidr", "10.50.0.0/24", "--json",
        env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    vlan = json.loads(created.stdout)["vlan"]
    token = metalnet("token", "create", "acme-ci", "--project", "acme", env=env)
    assert token.returncode == 0, token.stderr

    # Spawn through the API with the project token; watch it become active.
    node = info["nodes"][0]
    api = httpx.Client(
        base_url=info["url"],
        headers={"Authorization": f"Bearer {token.stdout.strip()}"},
        timeout=10,
    )
    body = {"name": "web1", "network": "web", "node": node["name"]}
    body |= {"image_url": info["image_url"], "sha256": info["image_sha256"]}
    response = api.post("/v1/instances", json=body)
    assert response.status_code == 202, response.text

    def active() -> dict | None:
        instance = api.get("/v1/instances/web1").json()
        assert instance["state"] != "error", instance
        return instance if instance["state"] == "active" else None

    wait_for(active, SPAWN_SECONDS, "instance web1 active", interval=0.5)

    # The port, read back from the switch over NETCONF, is in the project's VLAN.
    ports = metalnet("switch", "ports", node["switch"], "--json", env=env)
    assert ports.returncode == 0, ports.stderr
    actual = {r["interface"]: r["actual_vlan"] for r in json.loads(ports.stdout)}
    assert actual[node["port"]] == vlan
    assert actual[info["nodes"][1]["port"]] == info["service_vlan"]  # lab up put it there

    # `lab down` stops the lab and everything it started (controller, agents).
    started = descendants(process.pid) | {process.pid}
    assert info["controller_pid"] in started
    down = metalnet("lab", "down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr
    assert process.wait(STOP_SECONDS) == 0
    wait_for(lambda: not any(map(running, started)), STOP_SECONDS, "every lab process gone")
    assert not (directory / "lab.json").exists()
    assert not (directory / "lab.pid").exists()

    # The stopped lab's database names ports long gone: a new lab needs a fresh --dir.
    again = metalnet("lab", "up", "--dir", str(directory))
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"error: {str(directory)!r} holds a stopped lab (metalnet.db): "
        "remove it or give another --dir"
    ]


def test_lab_down_without_a_lab_is_refused_in_one_line(tmp_path: Path) -> None:
    result = metalnet("lab", "down", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: no lab is running in {str(tmp_path)!r} (no live pid in lab.pid)"
    ]


def test_lab_up_refuses_a_negative_commit_latency(tmp_path: Path) -> None:
    result = metalnet("lab", "up", "--dir", str(tmp_path), "--commit-latency", "-1")
    assert result.returncode == 2
    assert "commit-latency" in result.stderr
    assert not list(tmp_path.iterdir())
