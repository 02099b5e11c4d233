"""`metalnet lab up`: a lab with a running controller, to try metalnet by hand.

The lab process holds the physical world (simulated Junos switches over SSH, BMCs,
nodes with file disks whose agents it starts when they PXE boot) and runs the
controller as a real `metalnet serve` child over a SQLite database in the lab's
directory. Switches and nodes are registered; projects, networks and project tokens
are the user's to create with the CLI. Once everything answers, `lab.json` tells
where everything is (see `LabInfo`); on SIGINT or SIGTERM the lab stops what it
started and removes `lab.json` and its pid file. `metalnet lab down` sends that
SIGTERM to the pid in `lab.pid`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

import httpx

from metalnet import apitokens
from metalnet.config import Settings
from metalnet.db.engine import Database, upgrade
from metalnet.errors import InputError, MetalnetError
from metalnet.retry import Retry
from metalnet.sim.lab.controller import serve, write_config
from metalnet.sim.lab.lab import SWITCH_PASSWORD, SWITCH_USER, Lab
from metalnet.sim.lab.world import DATABASE_FILE, lab_settings
from metalnet.switches.reconcile import reconcile

INFO_FILE = "lab.json"
PID_FILE = "lab.pid"
CONFIG_FILE = "metalnet.toml"
SERVE_LOG = "serve.log"
READY = Retry(seconds=60.0, first=0.1, cap=1.0)  # `serve` imports, migrates nothing, listens
STOP_SECONDS = 30.0  # SIGTERM, then SIGKILL, for the controller; `lab down` waits this long


class LabFailed(MetalnetError):
    """The lab could not start (the controller died or never answered)."""


class ControllerNotReady(Exception):
    """The controller does not answer the API yet."""


@dataclass(frozen=True)
class SwitchInfo:
    name: str
    address: str
    username: str
    password: str


@dataclass(frozen=True)
class NodeInfo:
    name: str
    mac: str
    switch: str
    port: str
    bmc: str


@dataclass(frozen=True)
class LabInfo:
    """What `lab.json` holds: where the controller, switches and nodes are."""

    url: str
    database_url: str
    admin_token: str
    image_url: str
    image_sha256: str
    service_vlan: int
    switches: list[SwitchInfo]
    nodes: list[NodeInfo]
    pid: int
    controller_pid: int

    def write(self, directory: Path) -> None:
        """Write lab.json at once (rename), so a reader never sees half of it."""
        partial = directory / f".{INFO_FILE}.tmp"
        partial.write_text(json.dumps(asdict(self), indent=2) + "\n")
        partial.replace(directory / INFO_FILE)


def run(directory: Path, nodes: int, switches: int, commit_latency: float) -> None:
    """Start the lab in `directory`, write lab.json, run until SIGINT/SIGTERM, stop it."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    claim(directory)
    stop_requested = _catch_stop_signals()
    settings = lab_settings(directory)
    db = Database(settings)
    lab = Lab(
        directory / "lab", settings, nodes=nodes, switches=switches, commit_latency=commit_latency
    )
    controller: subprocess.Popen[bytes] | None = None
    try:
        upgrade(db.engine)
        lab.start()
        lab.register(db)
        with db.session() as session:
            _, admin_token = apitokens.create(session, "lab-admin", None)
        controller = _start_controller(directory, settings)
        url = f"http://{settings.controller_listen}"
        _wait_until_answering(url, admin_token, controller, directory / SERVE_LOG)
        _ports_to_service(db)
        info = _info(lab, settings, url, admin_token, controller.pid)
        info.write(directory)
        print(
            f"lab up: controller {url}, {len(lab.nodes)} nodes; see {directory / INFO_FILE}",
            flush=True,
        )
        while not stop_requested and controller.poll() is None:
            time.sleep(0.2)
        if controller.poll() is not None and not stop_requested:
            raise LabFailed(f"the controller exited ({controller.returncode}); see {SERVE_LOG}")
    finally:
        (directory / INFO_FILE).unlink(missing_ok=True)
        if controller is not None:
            _stop(controller)
        lab.stop()
        db.engine.dispose()
        (directory / PID_FILE).unlink(missing_ok=True)


def down(directory: Path) -> int:
    """Stop the lab running in `directory`; returns its pid once it has exited."""
    pid = running_pid(directory)
    if pid is None:
        raise InputError(f"no lab is running in {str(directory)!r} (no live pid in {PID_FILE})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS + 10.0
    while _alive(pid):
        if time.monotonic() > deadline:
            raise LabFailed(f"lab {pid} did not stop within {STOP_SECONDS + 10.0:g}s")
        time.sleep(0.1)
    return pid


def claim(directory: Path) -> None:
    """Write our pid file, refusing a directory where another lab runs or ran.

    A stopped lab's database names switches and BMCs that listened on ports long
    gone; a new lab starts from an empty directory instead of pretending to resume.
    """
    pid = running_pid(directory)
    if pid is not None:
        raise InputError(f"a lab is already running in {str(directory)!r} (pid {pid})")
    if (directory / DATABASE_FILE).exists():
        raise InputError(
            f"{str(directory)!r} holds a stopped lab ({DATABASE_FILE}): "
            "remove it or give another --dir"
        )
    (directory / PID_FILE).write_text(f"{os.getpid()}\n")


def running_pid(directory: Path) -> int | None:
    """The pid in the directory's pid file if that process is alive and is a lab."""
    try:
        pid = int((directory / PID_FILE).read_text())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return pid if b"lab" in cmdline and _alive(pid) else None


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as gone: it has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _catch_stop_signals() -> list[int]:
    """SIGINT/SIGTERM append to the returned list (which is then true).

    The handler only appends: setting a threading.Event from a signal handler can
    deadlock when the signal lands while the main thread holds that Event's lock.
    """
    received: list[int] = []

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    return received


def _start_controller(directory: Path, settings: Settings) -> subprocess.Popen[bytes]:
    """`metalnet serve` on the lab's database, with the lab's timeouts, logging to serve.log."""
    config = write_config(
        directory / CONFIG_FILE,
        database_url=settings.database_url,
        controller_listen=settings.controller_listen,
        image_server=settings.image_server,
        step_timeout=settings.step_timeout,
        poll_interval=settings.poll_interval,
        switch_timeout=settings.switch_timeout,
    )
    return serve(config, directory / SERVE_LOG)


def _wait_until_answering(
    url: str, token: str, controller: subprocess.Popen[bytes], log_file: Path
) -> None:
    """Poll the API with the admin token until it answers 200; fail if `serve` exits."""

    def probe() -> None:
        if controller.poll() is not None:
            raise LabFailed(f"the controller exited ({controller.returncode}): {_tail(log_file)}")
        try:
            response = httpx.get(
                f"{url}/v1/projects", headers={"Authorization": f"Bearer {token}"}, timeout=2.0
            )
        except httpx.HTTPError as exc:
            raise ControllerNotReady(str(exc)) from None
        if response.status_code != 200:
            raise ControllerNotReady(f"GET /v1/projects: {response.status_code}")

    try:
        READY.call(probe, retry_on=(ControllerNotReady,), what="waiting for the lab controller")
    except ControllerNotReady as exc:
        raise LabFailed(f"the controller at {url} never answered: {exc}") from None


def _ports_to_service(db: Database) -> None:
    """One reconcile pass, as an operator runs after enrolling: every node's port leaves
    the switch's factory VLAN for the service VLAN. It also proves the switches answer."""
    reports = reconcile(db, fix=True)
    problems = [f"{r.switch}: {r.error}" for r in reports if r.error]
    problems += [
        f"{d.switch} {d.interface}: {d.error}" for r in reports for d in r.drift if not d.fixed
    ]
    if problems:
        raise LabFailed(f"the lab's switches did not take their ports: {'; '.join(problems)}")


def _info(lab: Lab, settings: Settings, url: str, admin_token: str, controller: int) -> LabInfo:
    return LabInfo(
        url=url,
        database_url=settings.database_url,
        admin_token=admin_token,
        image_url=lab.image_url,
        image_sha256=lab.image_sha256,
        service_vlan=settings.service_vlan,
        switches=[
            SwitchInfo(s.name, f"{s.host}:{s.port}", SWITCH_USER, SWITCH_PASSWORD)
            for s in lab.fleet.switches
        ],
        nodes=[NodeInfo(n.name, n.mac, n.switch.name, n.interface, n.bmc.url) for n in lab.nodes],
        pid=os.getpid(),
        controller_pid=controller,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after STOP_SECONDS; always reaped."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    return "(no log)"
