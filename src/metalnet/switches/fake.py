"""An in-memory switch for tests of the layers above the driver layer.

Every FakeDriver pointed at the same host:port shares one `FakeDevice`, so separate
sessions see each other's commits as they would on a real switch. Tests that
exercise the wire protocol use the Junos simulator instead.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from metalnet.switches.base import (
    CommitRecord,
    CommitRefused,
    PortChange,
    PortState,
    SwitchDriver,
    SwitchUnreachable,
)

FAKE_INTERFACE_RE = re.compile(r"(?:eth|port)[0-9]{1,3}")


@dataclass
class FakeDevice:
    """The state of one fake switch: committed VLAN per port, a commit count, faults."""

    ports: dict[str, int | None]
    commits: int = 0
    latency: float = 0.0
    down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


DEVICES: dict[tuple[str, int], FakeDevice] = {}


def fake_device(host: str, port: int, ports: int = 48) -> FakeDevice:
    """The device at host:port, created with `ports` ports (eth0..) on first use."""
    key = (host, port)
    if key not in DEVICES:
        DEVICES[key] = FakeDevice(ports={f"eth{i}": None for i in range(ports)})
    return DEVICES[key]


class FakeDriver(SwitchDriver):
    """Driver for `FakeDevice`s; interfaces are `eth<N>` or `port<N>`."""

    name: ClassVar[str] = "fake"

    @classmethod
    def check_interface(cls, interface: str) -> str:
        if not isinstance(interface, str) or not FAKE_INTERFACE_RE.fullmatch(interface):
            raise ValueError(
                f"interface {interface!r} is not a fake-switch port name (eth0..eth999)"
            )
        return interface

    def _device(self) -> FakeDevice:
        device = fake_device(self.target.host, self.target.port)
        if device.down:
            raise SwitchUnreachable(self.target.name, "connection refused")
        return device

    def open(self) -> None:
        self._device()

    def close(self) -> None:
        """Nothing to release."""

    def stage(self, changes: Sequence[PortChange]) -> CommitRecord:
        started = time.monotonic()
        for change in changes:
            self.check_interface(change.interface)
        device = self._device()
        with device.lock:
            unknown = [c.interface for c in changes if c.interface not in device.ports]
            if unknown:
                raise CommitRefused(self.target.name, "interface does not exist", unknown)
            time.sleep(device.latency)
            for change in changes:
                device.ports[change.interface] = change.vlan
            device.commits += 1
        return CommitRecord(self.target.name, tuple(changes), True, time.monotonic() - started)

    def read_ports(self, interfaces: Sequence[str] | None = None) -> dict[str, PortState]:
        device = self._device()
        names = list(device.ports) if interfaces is None else list(interfaces)
        return {
            name: PortState(name, vlan, vlans=() if vlan is None else (vlan,))
            for name in names
            if name in device.ports
            for vlan in [device.ports[name]]
        }

    def facts(self) -> dict[str, str]:
        self._device()
        return {"model": "fake", "version": "0", "hostname": self.target.name}
