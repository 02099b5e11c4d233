"""An in-memory switch for tests of the layers above the driver layer.

Every FakeDriver pointed at the same host:port shares one `FakeDevice`, so separate
sessions see each other's commits as they would on a real switch. Tests that
exercise the wire protocol use the Junos simulator instead.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from metalnet.switches.base import (
    CommitRecord,
    CommitRefused,
    PortChange,
    PortState,
    SwitchDriver,
    SwitchSessionLost,
    SwitchUnreachable,
)

FAKE_INTERFACE_RE = re.compile(r"(?:eth|port)[0-9]{1,3}")


@dataclass
class FakeDevice:
    """The state of one fake switch: committed VLAN per port, the ports disabled, a
    commit count, faults.

    Staged commits behave as Junos commit confirmed does: `rollback` holds the ports
    as they were before the first unconfirmed commit, restored when the session that
    staged them ends unconfirmed. `losses` lists the fate of the next operations
    (stage or confirm), one each: "ok", "before" (the session is lost, nothing
    happens) or "after" (the operation took effect, then the session was lost).
    `during_stage` lists what happens while the next stages are on the device, one
    each (called with `lock` held): a test's changes arriving during a transaction.
    """

    ports: dict[str, int | None]
    disabled: set[str] = field(default_factory=set)
    commits: int = 0
    latency: float = 0.0
    down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    rollback: tuple[dict[str, int | None], set[str]] | None = None
    losses: list[str] = field(default_factory=list)
    during_stage: list[Callable[[], None]] = field(default_factory=list)

    def roll_back(self) -> None:
        if self.rollback is not None:
            (self.ports, self.disabled), self.rollback = self.rollback, None


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

    pending = False

    def open(self) -> None:
        self._device()

    def close(self) -> None:
        """A session ending with a staged commit unconfirmed rolls it back."""
        if self.pending:
            with self._device().lock:
                self._device().roll_back()
            self.pending = False

    def _lose(self, device: FakeDevice, fate: str | None, when: str) -> None:
        if fate == when:
            if self.pending:
                device.roll_back()
            self.pending = False
            raise SwitchSessionLost(self.target.name, f"session lost ({when} the commit)")

    def stage(self, changes: Sequence[PortChange]) -> CommitRecord:
        started = time.monotonic()
        for change in changes:
            self.check_interface(change.interface)
        device = self._device()
        with device.lock:
            fate = device.losses.pop(0) if device.losses else None
            self._lose(device, fate, "before")
            unknown = [c.interface for c in changes if c.interface not in device.ports]
            if unknown:
                raise CommitRefused(self.target.name, "interface does not exist", unknown)
            time.sleep(device.latency)
            if device.during_stage:
                device.during_stage.pop(0)()
            if device.rollback is None:
                device.rollback = (dict(device.ports), set(device.disabled))
            for change in changes:
                device.ports[change.interface] = change.vlan
                if change.enabled:
                    device.disabled.discard(change.interface)
                else:
                    device.disabled.add(change.interface)
            device.commits += 1
            self.pending = True
            self._lose(device, fate, "after")
        return CommitRecord(self.target.name, tuple(changes), True, time.monotonic() - started)

    def confirm(self) -> None:
        if not self.pending:
            return
        device = self._device()
        with device.lock:
            fate = device.losses.pop(0) if device.losses else None
            self._lose(device, fate, "before")
            device.rollback = None
            device.commits += 1
            self.pending = False
            self._lose(device, fate, "after")

    def read_ports(self, interfaces: Sequence[str] | None = None) -> dict[str, PortState]:
        device = self._device()
        names = list(device.ports) if interfaces is None else list(interfaces)
        return {
            name: PortState(
                name,
                vlan,
                enabled=name not in device.disabled,
                vlans=() if vlan is None else (vlan,),
            )
            for name in names
            if name in device.ports
            for vlan in [device.ports[name]]
        }

    def facts(self) -> dict[str, str]:
        self._device()
        return {"model": "fake", "version": "0", "hostname": self.target.name}
