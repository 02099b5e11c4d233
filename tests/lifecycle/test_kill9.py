"""kill -9 of a real `metalnet serve` process at every lifecycle step, then resume.

The lab (switches, BMCs, disks, agents) lives in the test process, the controller in
a child process that is SIGKILLed while it works. After each restart the lifecycle
must go on from the recorded step; no commit may ever put the port in a project
VLAN it must not be in, and the end state must be exact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from labworld import World, world_with

from metalnet.lifecycle import instances
from metalnet.lifecycle.invariants import port_violation
from metalnet.lifecycle.states import SPAWN, TERMINATE
from metalnet.power import PowerState


def write_config(world: World, path: Path) -> Path:
    s = world.settings
    path.write_text(
        f'database_url = "{s.database_url}"\n'
        f'controller_listen = "{s.controller_listen}"\n'
        f'image_server = "{s.image_server}"\n'
        "step_timeout = 30\npoll_interval = 0.2\nswitch_timeout = 30\nbmc_timeout = 10\n"
    )
    return path


def start_serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "metalnet", "--config", str(config), "serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def current(world: World, name: str) -> tuple[str, str]:
    with world.db.session() as s:
        inst = instances.get_instance(s, name)
        return inst.state, inst.step


def kill_at_each(world, name, plan, final, config, log, kills) -> None:
    """Start serve; for each step, wait until it is recorded, kill -9, restart."""
    proc = start_serve(config, log)
    try:
        for step in plan:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                state, at = current(world, name)
                if state in final or (at in plan and plan.index(at) >= plan.index(step)):
                    break
                time.sleep(0.01)
            if state in final:
                break
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills.append(at)
            proc = start_serve(config, log)
        deadline = time.monotonic() + 90
        while current(world, name)[0] not in final and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_kill9_at_every_step_resumes_and_never_leaks(tmp_path: Path) -> None:
    with world_with(tmp_path, nodes=1, commit_latency=1.0) as world:
        node = world.node("n1")
        violations: list[str] = []

        def on_commit(switch, vlans):
            with world.db.session() as s:
                problem = port_violation(s, "n1", vlans.get(node.interface))
            if problem:
                violations.append(problem)

        node.switch.on_commit(on_commit)
        config = write_config(world, tmp_path / "metalnet.toml")
        log = tmp_path / "serve.log"
        kills: list[str] = []
        with world.db.session() as s:
            instances.create_instance(
                s,
                "web",
                "alpha",
                "net",
                "n1",
                world.lab.image_url,
                world.lab.image_sha256,
                settings=world.settings,
            )
        kill_at_each(world, "web", SPAWN.steps, ("active", "error"), config, log, kills)
        assert current(world, "web") == ("active", "active"), log.read_text()[-3000:]
        assert node.port_vlan() == world.vlans["alpha"]
        assert node.running == "tenant image"

        with world.db.session() as s:
            instances.delete_instance(s, "web")
        kill_at_each(world, "web", TERMINATE.steps, ("deleted", "error"), config, log, kills)
        assert current(world, "web") == ("deleted", "deleted"), log.read_text()[-3000:]
        assert node.port_vlan() == world.settings.service_vlan
        assert world.lab.disk_is_zero(node)
        assert node.power.state == PowerState.OFF
        assert not violations
        # the long steps are always caught mid-way; short ones (a BMC call) when the timing allows
        assert {"port_to_service", "deploy", "port_to_project", "erase"} <= set(kills), kills
        assert len(kills) >= 8, kills
