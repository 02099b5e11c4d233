"""One simulated server of the lab: NIC and cabling, BMC, disk, and what it runs.

The lab (lab.py) decides what a node does when its power changes (or hands it to
the node's QEMU machine, vm.py); the data plane (dataplane.py) gives it a network
namespace, or a tap for its machine, in root mode. Both work on this one
record of the node.
"""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from metalnet.power import PowerState
from metalnet.sim.bmc import SimBmc, SimNodePower
from metalnet.sim.lab.vm import VmMachine
from metalnet.sim.switch.device import SimSwitch

TENANT_IMAGE = "tenant image"
"""What `LabNode.running` says while a node runs the image a deploy wrote to its disk:
a tenant's OS (the lab checks the disk's bytes against the image when it boots it)."""


@dataclass(frozen=True)
class Seen:
    """What a node ran at one moment, as the simulators know it (its BMC's power state
    and what the lab booted), never as metalnet's database records it.

    `power_events` counts the node's power changes: two sightings with equal counts
    saw no power change in between, so the node ran the same thing throughout.
    """

    power: PowerState
    running: str
    power_events: int

    @property
    def tenant_os(self) -> bool:
        """Whether the node runs a tenant's OS: powered and booted from its deployed disk."""
        return self.power is PowerState.ON and self.running == TENANT_IMAGE


@dataclass
class LabNode:
    """One simulated server: NIC, cabling, BMC, disk, and what it is running.

    `vm`: the QEMU machine that plays this server (firmware, kernel, disk), or None
    when the lab plays it with processes (an agent on the host or in a namespace).
    """

    name: str
    mac: str
    switch: SimSwitch
    interface: str
    disk: Path
    power: SimNodePower
    bmc: SimBmc | None = None
    vm: VmMachine | None = None
    agent: subprocess.Popen[bytes] | None = None
    running: str = "off"
    boots: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def port_vlan(self) -> int | None:
        """The VLAN the switch's committed configuration gives this node's port."""
        return self.switch.port_vlans().get(self.interface)

    def seen(self) -> Seen:
        """What the node runs now (a QEMU machine's `running` names the device it boots,
        not what it booted, so only a node the lab plays can say `tenant_os`)."""
        with self.lock:
            return Seen(self.power.state, self.running, len(self.boots))

    def stop_agent(self) -> None:
        """Kill the ramdisk agent, if one runs (the node lost power or rebooted)."""
        if self.agent is not None and self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait()
        self.agent = None
