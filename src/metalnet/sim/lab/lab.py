"""The unprivileged lab: simulated Junos switches, BMCs, disks and agents wired together.

The lab plays the physical world. A node powered on with boot device PXE runs the
agent only if its switch port is in the service VLAN according to the simulated
switch's *committed* configuration (no DHCP offer otherwise); booted from disk it
runs whatever image is on its disk. The lab never bypasses the switch.

In root mode a `DataPlane` (metalnet.sim.lab.dataplane) makes this real: the lab tells
it when a node boots or loses power, a PXE boot also needs a real DHCP lease on the
service network, and the agent runs inside the node's network namespace, reaching
the controller and the images over the service network only.

With `vms` (root, with a data plane) every node is a QEMU machine (metalnet.sim.lab.vm):
the BMCs' power events start, stop and reset it, its firmware PXE-boots the real
ramdisk whose real agent writes its disk, and it boots the deployed image; the lab
then plays nothing itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from metalnet import inventory
from metalnet.boot import cmdline, ipxe
from metalnet.config import Settings
from metalnet.db.engine import Database
from metalnet.power import BootDevice
from metalnet.sim.bmc import IpmiBmc, PowerEvent, RedfishBmc, SimNodePower
from metalnet.sim.lab import vm
from metalnet.sim.lab.dataplane import DataPlane
from metalnet.sim.lab.nodes import TENANT_IMAGE, LabNode
from metalnet.sim.switch.device import SimSwitch
from metalnet.sim.switch.fleet import SimFleet

log = logging.getLogger(__name__)

SWITCH_USER, SWITCH_PASSWORD = "netconf", "lab-switch-pw"
BMC_USER, BMC_PASSWORD = "admin", "lab-bmc-pw"
BOOT_FETCH_TIMEOUT_SECONDS = 10.0


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        log.debug("image server: " + format, *args)


class Lab:
    """Start with `start()`, enrol into a database with `register()`, `stop()` at the end."""

    def __init__(
        self,
        workdir: Path,
        settings: Settings,
        *,
        nodes: int = 4,
        switches: int = 1,
        ports: int = 48,
        commit_latency: float = 0.0,
        disk_mib: int = 8,
        image_mib: int = 2,
        bmc: str = "mixed",
        dataplane: DataPlane | None = None,
        vms: bool = False,
        image: Path | None = None,
    ) -> None:
        """`image`: the tenant image to serve (else `image_mib` of random bytes);
        `vms`: QEMU machines for nodes (needs `dataplane`)."""
        if vms and dataplane is None:
            raise ValueError("QEMU machines need the root-mode data plane")
        if vms:
            vm.require()
        self.workdir = workdir
        self.dataplane = dataplane
        self.settings = settings
        self.node_count = nodes
        self.switch_count = switches
        self.ports = ports
        self.commit_latency = commit_latency
        self.disk_bytes = disk_mib << 20
        self.image_bytes = image_mib << 20
        self.bmc_kind = bmc
        self.vms = vms
        self.image = image
        self.fleet: SimFleet | None = None
        self.nodes: list[LabNode] = []
        self._http: ThreadingHTTPServer | None = None
        self.image_sha256 = ""

    # Setting up ------------------------------------------------------------------

    def start(self) -> Lab:
        (self.workdir / "disks").mkdir(parents=True, exist_ok=True)
        (self.workdir / "agents").mkdir(exist_ok=True)
        self._serve_image()
        self.fleet = SimFleet()
        switches = [
            self.fleet.add(
                f"tor{i + 1}",
                ports=self.ports,
                username=SWITCH_USER,
                password=SWITCH_PASSWORD,
                commit_latency=self.commit_latency,
            )
            for i in range(self.switch_count)
        ]
        for i in range(self.node_count):
            self.nodes.append(self._make_node(i, switches[i % len(switches)], i // len(switches)))
        return self

    def _serve_image(self) -> None:
        self.images.mkdir(exist_ok=True)
        served = self.images / "tenant.img"
        if self.image is not None:
            shutil.copyfile(self.image, served)
            self.image_bytes = served.stat().st_size
        else:
            served.write_bytes(os.urandom(self.image_bytes))
        self.image_sha256 = _sha256(served)
        handler = partial(_QuietHandler, directory=str(self.images))
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._http.serve_forever, name="lab-images", daemon=True).start()

    @property
    def images(self) -> Path:
        """The directory the image server serves (on 127.0.0.1, and on the service
        network in root mode)."""
        return self.workdir / "images"

    @property
    def image_url(self) -> str:
        """URL of the tenant image the lab serves, as the nodes' agents reach it."""
        if self.dataplane is not None:
            return f"{self.dataplane.image_base_url}/tenant.img"
        return f"http://127.0.0.1:{self._http.server_address[1]}/tenant.img"

    def _make_node(self, index: int, switch: SimSwitch, port_index: int) -> LabNode:
        name = f"n{index + 1}"
        disk = self.workdir / "disks" / f"{name}.img"
        disk.write_bytes(os.urandom(self.disk_bytes))  # a previous tenant's data
        node = LabNode(
            name=name,
            mac=f"52:54:00:00:{index >> 8:02x}:{index & 0xFF:02x}",
            switch=switch,
            interface=f"ge-0/0/{port_index}",
            disk=disk,
            power=SimNodePower(name),
        )
        if self.vms:
            os.truncate(disk, max(self.disk_bytes, self.image_bytes))
            node.vm = vm.VmMachine(name, node.mac, disk, self.workdir / "vms")
        node.power.on_change = partial(self._on_power, node)
        kind = self.bmc_kind if self.bmc_kind != "mixed" else ("redfish", "ipmi")[index % 2]
        bmc_class = RedfishBmc if kind == "redfish" else IpmiBmc
        node.bmc = bmc_class(node.power, username=BMC_USER, password=BMC_PASSWORD).start()
        return node

    def register(self, db: Database, initial_erase: bool = False) -> None:
        """Enrol the lab's switches and nodes into the inventory, as an operator would
        (by default vouching for their disks, so they are offered at once)."""
        with db.session() as session:
            for switch in self.fleet.switches:
                inventory.add_switch(
                    session,
                    switch.name,
                    "junos",
                    f"{switch.host}:{switch.port}",
                    SWITCH_USER,
                    SWITCH_PASSWORD,
                )
            for node in self.nodes:
                inventory.add_node(
                    session,
                    self.settings,
                    node.name,
                    node.mac,
                    node.switch.name,
                    node.interface,
                    node.bmc.url,
                    BMC_USER,
                    BMC_PASSWORD,
                    initial_erase=initial_erase,
                )

    # The physical world ------------------------------------------------------------

    def _on_power(self, node: LabNode, event: PowerEvent, device: BootDevice | None) -> None:
        """BMC callback, which must return at once (a BMC answers before the node has
        booted): with a data plane the boot (DHCP...) runs on the node's own timeline."""
        if self.dataplane is not None:
            self.dataplane.on_node(node, partial(self._power_changed, node, event, device))
        else:
            self._power_changed(node, event, device)

    def _power_changed(self, node: LabNode, event: PowerEvent, device: BootDevice | None) -> None:
        with node.lock:
            node.stop_agent()
            if node.vm is not None:
                node.running = node.vm.power(event, device)
            elif event == PowerEvent.POWER_OFF:
                node.running = "off"
                if self.dataplane is not None:
                    self.dataplane.power_off(node)
            elif device == BootDevice.PXE:
                node.running = self._pxe_boot(node)
            else:
                node.running = self._disk_boot(node)
            node.boots.append(f"{event}:{device or '-'}:{node.running}")
            log.info("lab node %s: %s from %s -> %s", node.name, event, device, node.running)

    def _pxe_boot(self, node: LabNode) -> str:
        vlan = node.port_vlan()
        if self.dataplane is not None and not self.dataplane.boot(node, pxe=True):
            return f"pxe failed: no DHCP lease on the service network (port in VLAN {vlan})"
        if vlan != self.settings.service_vlan:
            return f"pxe failed: no DHCP offer (port in VLAN {vlan})"
        entry = self._fetch_boot_entry(node.mac)
        if entry is None:
            return "pxe failed: no boot entry for this MAC"
        log_file = (self.workdir / "agents" / f"{node.name}.log").open("ab")
        node.agent = self._start_agent(
            node,
            [
                sys.executable,
                "-m",
                "metalnet",
                "agent",
                "--controller",
                entry.controller,
                "--node",
                entry.node,
                "--token-env",
                "METALNET_AGENT_TOKEN",
                "--disk",
                str(node.disk),
                "--wait",
                "60",
            ],
            env={**os.environ, "METALNET_AGENT_TOKEN": entry.token},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()
        return "ramdisk"

    def _fetch_boot_entry(self, mac: str) -> cmdline.AgentBoot | None:
        """What iPXE would do: fetch the node's script and read its kernel command line.

        The lab plays the firmware from the host: with a data plane, the agents' address
        is inside the service network, so it asks the controller's listen address;
        otherwise the agents' address (a relay in front of several workers, say).
        """
        if self.dataplane is not None:
            base = f"http://{self.settings.controller_listen}"
        else:
            base = self.settings.controller_url
        url = base + ipxe.NODE_ROUTE.format(mac=mac.replace(":", "-"))
        reply = httpx.get(url, timeout=BOOT_FETCH_TIMEOUT_SECONDS)
        if reply.status_code != 200:
            return None
        kernel = next(line for line in reply.text.splitlines() if line.startswith("kernel "))
        return cmdline.agent_boot(kernel)

    def _start_agent(self, node: LabNode, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        """The ramdisk's agent: a process on the host, or in the node's namespace."""
        if self.dataplane is not None:
            return self.dataplane.run_in(node, argv, **popen)
        return subprocess.Popen(argv, **popen)

    def _disk_boot(self, node: LabNode) -> str:
        if self.dataplane is not None:
            self.dataplane.boot(node, pxe=False)  # the tenant image asks for its address
        with node.disk.open("rb") as disk:
            head = disk.read(self.image_bytes)
        if hashlib.sha256(head).hexdigest() == self.image_sha256:
            return TENANT_IMAGE
        return "no bootable image"

    def disk_is_zero(self, node: LabNode) -> bool:
        """Whether every byte of the node's disk is zero (erased)."""
        with node.disk.open("rb") as disk:
            while chunk := disk.read(1 << 20):
                if chunk.count(0) != len(chunk):
                    return False
        return True

    def stop(self) -> None:
        """Kill agents, stop BMCs, switches and the image server."""
        for node in self.nodes:
            with node.lock:
                node.stop_agent()
                if node.vm is not None:
                    node.vm.stop()
            if node.bmc is not None:
                node.bmc.stop()
        if self.fleet is not None:
            self.fleet.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
