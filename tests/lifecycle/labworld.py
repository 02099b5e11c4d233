"""A lab (simulated switches, BMCs, disks, agents) plus a database, for lifecycle tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from metalnet import inventory
from metalnet.db.engine import Database, upgrade
from metalnet.demo import demo_settings
from metalnet.sim.lab import Lab


@dataclasses.dataclass
class World:
    """What a lifecycle test works with."""

    db: Database
    lab: Lab
    vlans: dict[str, int]

    @property
    def settings(self):
        return self.db.settings

    def node(self, name: str):
        return next(n for n in self.lab.nodes if n.name == name)


@contextmanager
def world_with(
    tmp_path: Path, nodes: int = 2, bmc: str = "redfish", commit_latency: float = 0.0, **settings
) -> Iterator[World]:
    base = dataclasses.replace(demo_settings(tmp_path), step_timeout=30.0, **settings)
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
        lab.register(db)
        vlans = {}
        with db.session() as session:
            for project, cidr in (("alpha", "10.20.0.0/24"), ("beta", "10.30.0.0/24")):
                inventory.create_project(session, project)
                vlans[project] = inventory.create_network(session, base, project, "net", cidr).vlan
        yield World(db, lab, vlans)
    finally:
        lab.stop()
        db.engine.dispose()
