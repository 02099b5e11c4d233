"""A real metalnet controller and simulated Junos switches for the ML2 driver tests.

Neutron pins its own libraries, so these tests run in Neutron's virtual environment
while metalnet itself (`metalnet serve`, `metalnet sim switch`) runs from the main one
(METALNET_VENV, default `.venv`), as separate processes spoken to over HTTP and NETCONF.

Switches: tor1 and tor2 (commit latency 1 s, like a small real switch), tor3 whose
first commit is refused, tor4 registered on a port nobody listens on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
METALNET = Path(os.environ.get("METALNET_VENV", ROOT / ".venv")) / "bin" / "metalnet"
REFUSAL = "VLAN 26 is reserved on this switch"
CHASSIS = {"tor1": "3c:fd:fe:00:00:01", "tor2": "3c:fd:fe:00:00:02"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{proc.args} did not listen on {port}"
        time.sleep(0.05)


@dataclass
class Metalnet:
    """The controller's URL and admin token, and where each simulated switch listens."""

    url: str
    token: str
    switch_ports: dict[str, int]

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def commits(self, switch: str) -> list[dict]:
        """The switch change log, oldest first (one entry per transaction attempt)."""
        changes = self.api("GET", "/v1/switch-changes", params={"limit": 1000}).json()
        return [c for c in reversed(changes) if c["switch"] == switch]

    @contextmanager
    def held(self, *switches: str) -> Iterator[None]:
        """Hold the switches' configuration lock from another NETCONF session (as an
        operator's `configure exclusive` does), so metalnet's commits wait for it."""
        from ncclient import manager

        sessions = []
        try:
            for name in switches:
                session = manager.connect(
                    host="127.0.0.1",
                    port=self.switch_ports[name],
                    username="admin",
                    password="admin",
                    hostkey_verify=False,
                    look_for_keys=False,
                    allow_agent=False,
                    device_params={"name": "junos"},
                    timeout=30,
                )
                sessions.append(session)
                session.lock(target="candidate")
            yield
        finally:
            for session in sessions:
                session.close_session()

    def device_vlan(self, switch: str, interface: str) -> int | None:
        """The port's VLAN as the switch's committed configuration says, over NETCONF."""
        from metalnet.switches.base import SwitchTarget
        from metalnet.switches.junos import JunosDriver

        target = SwitchTarget(switch, "127.0.0.1", self.switch_ports[switch], "admin", "admin")
        with JunosDriver(target, timeout=30) as driver:
            return driver.read_ports([interface])[interface].vlan


@pytest.fixture(scope="session")
def metalnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metalnet]:
    assert METALNET.exists(), f"{METALNET} missing: install metalnet in the main venv first"
    work = tmp_path_factory.mktemp("metalnet")
    db = f"sqlite:///{work / 'metalnet.db'}"
    config = work / "metalnet.toml"
    config.write_text("reconcile_interval = 3600.0\nswitch_timeout = 30.0\n")
    procs: list[subprocess.Popen] = []
    log = (work / "processes.log").open("w")

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen([str(METALNET), *args], stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(METALNET), "--config", str(config), "--db", db, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout.strip()

    try:
        ports = {name: free_port() for name in ("tor1", "tor2", "tor3", "tor4")}
        sims = {
            "tor1": ["--commit-latency", "1"],
            "tor2": ["--commit-latency", "1"],
            "tor3": ["--fail-next-commit", REFUSAL],
        }
        for name, extra in sims.items():
            listen = f"127.0.0.1:{ports[name]}"
            proc = start("sim", "switch", "--name", name, "--listen", listen, *extra)
            wait_listening(ports[name], proc)
        run("db", "upgrade")
        for name, port in ports.items():
            chassis = ["--chassis-mac", CHASSIS[name]] if name in CHASSIS else []
            address = f"127.0.0.1:{port}"
            run("switch", "add", name, "--address", address, "--username", "admin",
                "--password", "admin", *chassis)  # fmt: skip
        token = run("token", "create", "neutron", "--admin")
        api_port = free_port()
        server = start(
            "--config", str(config), "--db", db, "serve", "--listen", f"127.0.0.1:{api_port}"
        )
        wait_listening(api_port, server)
        yield Metalnet(f"http://127.0.0.1:{api_port}", token, ports)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        log.close()
