"""A lab plus a migrated database with two projects: what tests and benchmarks start from.

`lab_settings` gives embedded defaults with lab-sized timeouts in a throwaway
directory; `world_with` starts a lab on them, registers it, creates projects alpha
and beta with one network each, and tears everything down on exit.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from metalnet import inventory
from metalnet.config import Settings, load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.sim.lab.lab import Lab
from metalnet.sim.lab.nodes import LabNode

PROJECTS = (("alpha", "10.20.0.0/24"), ("beta", "10.30.0.0/24"))
DATABASE_FILE = "metalnet.db"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lab_settings(
    workdir: Path, agent_url: str | None = None, image_server: str = "http://127.0.0.1"
) -> Settings:
    """Embedded defaults in a throwaway directory, with lab-sized timeouts.

    `agent_url`: where agents reach the controller, when not at its listen address;
    `image_server`: the lab's image server (a host without a port: any of its ports).
    """
    base = load_settings(None, f"sqlite:///{workdir / DATABASE_FILE}")
    return dataclasses.replace(
        base,
        agent_url=agent_url or base.agent_url,
        image_server=image_server,
        controller_listen=f"127.0.0.1:{free_port()}",
        step_timeout=90.0,
        poll_interval=0.2,
        switch_timeout=30.0,
    )


@dataclasses.dataclass
class World:
    """What a lifecycle test works with: the database, the lab, each project's VLAN."""

    db: Database
    lab: Lab
    vlans: dict[str, int]

    @property
    def settings(self) -> Settings:
        return self.db.settings

    def node(self, name: str) -> LabNode:
        return next(n for n in self.lab.nodes if n.name == name)


@contextmanager
def world_with(
    tmp_path: Path,
    nodes: int = 2,
    bmc: str = "redfish",
    commit_latency: float = 0.0,
    initial_erase: bool = False,
    **settings,
) -> Iterator[World]:
    """A started, registered lab on one switch with projects alpha and beta.

    `initial_erase`: enrol the nodes to be erased before first offered, instead of
    vouching for their disks (`Lab.register`).
    """
    base = dataclasses.replace(lab_settings(tmp_path), step_timeout=30.0, **settings)
    db = Database(base)
    upgrade(db.engine)
    lab = Lab(
        tmp_path / "lab",
        base,
        nodes=nodes,
        switches=1,
        ports=8,
        bmc=bmc,
        commit_latency=commit_latency,
    )
    lab.start()
    try:
        lab.register(db, initial_erase=initial_erase)
        vlans = {}
        with db.session() as session:
            for project, cidr in PROJECTS:
                inventory.create_project(session, project)
                vlans[project] = inventory.create_network(session, base, project, "net", cidr).vlan
        yield World(db, lab, vlans)
    finally:
        lab.stop()
        db.engine.dispose()
