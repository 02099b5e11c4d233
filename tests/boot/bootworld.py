"""The boot tests' world: a database with enrolled nodes and boot-server settings."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from metalnet.db.engine import Database
from metalnet.db.models import AgentTask
from metalnet.lifecycle import instances

SHA = "a" * 64
MACS = {"n1": "52:54:00:00:00:01", "n2": "52:54:00:00:00:02"}
STARTUP_DEADLINE_SECONDS = 10.0


@dataclass
class BootWorld:
    """The config file, the database, and the controller's URL once it serves."""

    config: Path
    db: Database
    url: str = ""

    def open_task(self, node: str, kind: str = "deploy") -> None:
        """What the lifecycle's pxe_boot step records: an instance and its agent task."""
        with self.db.session() as s:
            instance = instances.create_instance(
                s, f"i-{node}", "p", "net", node, "http://img/x", SHA
            )
            s.flush()
            image = {"image_url": "http://img/x", "sha256": SHA} if kind == "deploy" else {}
            s.add(AgentTask(node_id=instance.node_id, instance_id=instance.id, kind=kind, **image))

    def close_tasks(self) -> None:
        with self.db.session() as s:
            for task in s.query(AgentTask):
                task.state = "done"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path: Path, port: int, **extra: str) -> Path:
    values = {
        "database_url": f"sqlite:///{tmp_path / 'boot.db'}",
        "agent_url": f"http://127.0.0.1:{port}",
        "service_interface": "eth0",
        "service_cidr": "10.30.0.0/24",
        "boot_server": "10.30.0.1",
        "ramdisk_dir": str(tmp_path / "ramdisk"),
        **extra,
    }
    path = tmp_path / "metalnet.toml"
    path.write_text("".join(f'{key} = "{value}"\n' for key, value in values.items()))
    return path
