"""A REST API whose switch service drives a simulated Junos switch over real NETCONF/SSH.

tor1 (chassis MAC 3c:fd:fe:00:00:01) has node n1 on ge-0/0/1 held by instance i1 of
project alpha (building), node n2 on ge-0/0/2 with no instance; other ports are unbound.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import httpx
import pytest
import uvicorn

from metalnet import apitokens, inventory
from metalnet.api.app import create_app
from metalnet.config import VlanRange, load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.lifecycle import instances
from metalnet.sim.switch import SimSwitch
from metalnet.switches.service import Desired, SwitchService


@dataclass
class Rig:
    url: str
    token: str
    project_token: str
    db: Database
    switch: SimSwitch
    service: SwitchService

    def call(self, method: str, path: str, token: str | None = None, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kw)

    def attach(self, port: str, vlan: int, owner: str = "neutron:p1", switch: str = "tor1"):
        body = {"switch": switch, "port": port, "vlan": vlan, "owner": owner}
        return self.call("PUT", "/v1/attachments", json=body)

    def detach(self, port: str, owner: str = "neutron:p1"):
        body = {"switch": "tor1", "port": port, "owner": owner}
        return self.call("DELETE", "/v1/attachments", json=body)

    def desired(self) -> dict[str, Desired]:
        return self.service.desired_ports("tor1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rig(tmp_path) -> Iterator[Rig]:
    with SimSwitch.running("tor1", ports=48, username="netconf", password="pw") as sw:
        settings = load_settings(None, f"sqlite:///{tmp_path / 'att.db'}")
        # metalnet's projects below 2000, the outside owner's VLANs above
        db = Database(
            replace(settings, project_vlan_range=VlanRange(100, 1999), image_allow=("i",))
        )
        upgrade(db.engine)
        with db.session() as s:
            switch = inventory.add_switch(
                s, "tor1", "junos", f"{sw.host}:{sw.port}", "netconf", "pw"
            )
            switch.chassis_mac = "3c:fd:fe:00:00:01"
            inventory.create_project(s, "alpha")
            inventory.create_network(s, db.settings, "alpha", "net", "10.1.0.0/24")
            for i in (1, 2):
                inventory.add_node(
                    s, db.settings, f"n{i}", f"52:54:00:00:00:0{i}", "tor1", f"ge-0/0/{i}",
                    f"ipmi://127.0.0.1:62{i}", initial_erase=False,
                )  # fmt: skip
            instances.create_instance(
                s, "i1", "alpha", "net", "n1", "http://i/i.img", "a" * 64, settings=db.settings
            )
            _row, token = apitokens.create(s, "admin", None)
            _row, project_token = apitokens.create(s, "alpha", "alpha")
        service = SwitchService(db)
        app = create_app(db)
        app.state.switching = service
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "API did not start"
            time.sleep(0.01)
        yield Rig(f"http://127.0.0.1:{port}", token, project_token, db, sw, service)
        server.should_exit = True
        thread.join(10)
        service.close()
        db.engine.dispose()
