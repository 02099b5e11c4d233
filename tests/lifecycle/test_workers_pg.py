"""Three `metalnet serve` workers on one real PostgreSQL; one is killed -9 mid-deployment.

Every instance must end active, each carried out by one worker at a time (a killed
worker's instances are taken over after its lease expires and resumed from the
recorded step), no commit may ever leak a port into a foreign VLAN, and no switch
commit may fail from two workers contending for it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from labworld import world_with
from sqlalchemy import select

from metalnet.db.models import Instance, InstanceEvent, SwitchChange
from metalnet.lifecycle import instances
from metalnet.lifecycle.invariants import port_violation
from metalnet.sim.lab.failover import Failover

pytestmark = pytest.mark.postgres


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "metalnet", "--config", str(config), "serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_three_workers_one_killed_every_instance_active_once(tmp_path, pg_cluster) -> None:
    url = pg_cluster.new_database()
    ports = [free_port() for _ in range(3)]
    with world_with(tmp_path, nodes=6, commit_latency=0.5, database_url=url) as world:
        proxy = Failover(ports)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        agent_url = f"http://127.0.0.1:{proxy.server_address[1]}"
        # the nodes' firmware fetches its boot script where the agents reach the workers
        world.lab.settings = dataclasses.replace(world.lab.settings, agent_url=agent_url)
        violations: list[str] = []

        def on_commit(switch, vlans):
            with world.db.session() as s:
                for node in world.lab.nodes:
                    if problem := port_violation(s, node.name, vlans.get(node.interface)):
                        violations.append(problem)

        world.lab.fleet.switches[0].on_commit(on_commit)
        workers = []
        for i, port in enumerate(ports):
            config = tmp_path / f"w{i}.toml"
            config.write_text(
                f'database_url = "{url}"\n'
                f'controller_listen = "127.0.0.1:{port}"\nagent_url = "{agent_url}"\n'
                f'image_server = "{world.settings.image_server}"\n'
                "step_timeout = 60\npoll_interval = 0.2\nlease_seconds = 3\n"
            )
            workers.append(serve(config, tmp_path / f"w{i}.log"))
        try:
            with world.db.session() as s:
                for i, node in enumerate(world.lab.nodes):
                    project = ("alpha", "beta")[i % 2]
                    instances.create_instance(
                        s,
                        f"{project}-{node.name}",
                        project,
                        "net",
                        node.name,
                        world.lab.image_url,
                        world.lab.image_sha256,
                        settings=world.settings,
                    )
            victim = _kill_a_busy_worker(world, workers)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with world.db.session() as s:
                    states = list(s.scalars(select(Instance.state)))
                if all(state in ("active", "error") for state in states):
                    break
                time.sleep(0.2)
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in workers:
                proc.wait(30)
            proxy.shutdown()

        logs = "".join((tmp_path / f"w{i}.log").read_text() for i in range(3))
        assert states == ["active"] * 6, logs[-4000:]
        for i, node in enumerate(world.lab.nodes):
            assert node.port_vlan() == world.vlans[("alpha", "beta")[i % 2]]
        assert not violations
        with world.db.session() as s:
            assert all(s.scalars(select(SwitchChange.ok))), "a commit failed under contention"
            taken_over = _check_one_worker_at_a_time(s, victim)
        assert taken_over, "the killed worker held no instance: the test proved nothing"


def _kill_a_busy_worker(world, workers) -> str:
    """Wait until some worker is mid-lifecycle (an instance at deploy), then kill -9 it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with world.db.session() as s:
            owner = s.scalar(
                select(Instance.lease_owner).where(
                    Instance.step == "deploy", Instance.lease_owner.is_not(None)
                )
            )
        if owner:
            pid = int(owner.split(":")[1])
            os.kill(pid, signal.SIGKILL)
            next(p for p in workers if p.pid == pid).wait()
            return owner
        time.sleep(0.05)
    raise AssertionError("no instance reached the deploy step")


def _check_one_worker_at_a_time(session, victim: str) -> int:
    """Per instance, events come from one worker, or from the victim and then its heir."""
    taken_over = 0
    for inst in session.scalars(select(Instance)):
        workers = [
            e.worker
            for e in session.scalars(
                select(InstanceEvent)
                .where(InstanceEvent.instance_id == inst.id, InstanceEvent.worker.is_not(None))
                .order_by(InstanceEvent.id)
            )
        ]
        runs = [w for i, w in enumerate(workers) if i == 0 or workers[i - 1] != w]
        assert len(runs) == 1 or (len(runs) == 2 and runs[0] == victim), (inst.name, runs)
        taken_over += len(runs) == 2
    return taken_over
