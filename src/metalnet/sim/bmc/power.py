"""The power and boot model of one simulated node, shared by its BMC and the lab.

When the node powers on or reboots, `SimNodePower` tells the lab which device it
boots from, through the `on_change` callback, so the lab can start the node's ramdisk
agent (PXE) or its installed image (disk).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import StrEnum

from metalnet.power.base import BootDevice, PowerState

LOG = logging.getLogger(__name__)


class PowerEvent(StrEnum):
    """What happened to a simulated node's power, as told to `on_change`."""

    POWER_ON = "power_on"
    POWER_OFF = "power_off"
    REBOOT = "reboot"


PowerCallback = Callable[[PowerEvent, BootDevice | None], None]
"""`on_change(event, boot_device)`: boot_device is what the node boots (None on power_off)."""


class InvalidPowerTransition(Exception):
    """The request makes no sense in the node's present state (reset while off)."""


class SimNodePower:
    """Power and boot state of one simulated node, shared by its BMC and the lab.

    The boot model is the one BMCs expose: without an override the node boots
    `default_boot` (its firmware's boot order); an override names a device for the
    next boot only, or for every boot if persistent. A one-time override is used up
    by the boot that honours it.

    Thread-safe: BMC requests arrive on server threads. `on_change` is called after
    the state changed and outside the lock, on the BMC's request thread, so it may
    read this object but should return quickly (start a process, not wait for one).
    """

    def __init__(
        self,
        node: str,
        on_change: PowerCallback | None = None,
        *,
        state: PowerState = PowerState.OFF,
        default_boot: BootDevice = BootDevice.DISK,
    ) -> None:
        self.node = node
        self.on_change = on_change
        self.default_boot = default_boot
        self._state = state
        self._override: BootDevice | None = None
        self._persistent = False
        self._lock = threading.Lock()

    @property
    def state(self) -> PowerState:
        """Whether the node is powered."""
        return self._state

    @property
    def boot_override(self) -> BootDevice | None:
        """The device the BMC was told to boot next, or None to follow `default_boot`."""
        return self._override

    @property
    def boot_persistent(self) -> bool:
        """Whether the override survives the next boot."""
        return self._persistent

    @property
    def next_boot(self) -> BootDevice:
        """The device the node will boot from when it next powers on or reboots."""
        with self._lock:
            return self._override or self.default_boot

    def set_boot(self, device: BootDevice | None, persistent: bool = False) -> None:
        """Override the next boot device (None clears the override)."""
        with self._lock:
            self._override = device
            self._persistent = persistent and device is not None
        LOG.info("node %s: boot override %s (persistent: %s)", self.node, device, persistent)

    def power_on(self) -> None:
        """Power on and boot; nothing happens if the node is already on."""
        with self._lock:
            if self._state is PowerState.ON:
                return
            self._state = PowerState.ON
            device = self._boot()
        self._notify(PowerEvent.POWER_ON, device)

    def power_off(self) -> None:
        """Cut power; nothing happens if the node is already off."""
        with self._lock:
            if self._state is PowerState.OFF:
                return
            self._state = PowerState.OFF
        self._notify(PowerEvent.POWER_OFF, None)

    def reboot(self) -> None:
        """Hard reset of a running node; refused while it is off, as most BMCs do."""
        with self._lock:
            if self._state is PowerState.OFF:
                raise InvalidPowerTransition(f"node {self.node} is off: cannot reset")
            device = self._boot()
        self._notify(PowerEvent.REBOOT, device)

    def press_power_button(self) -> None:
        """Toggle power, like the front-panel button."""
        with self._lock:
            on = self._state is PowerState.ON
        self.power_off() if on else self.power_on()

    def _boot(self) -> BootDevice:
        """Pick the boot device (caller holds the lock) and use up a one-time override."""
        device = self._override or self.default_boot
        if not self._persistent:
            self._override = None
        return device

    def _notify(self, event: PowerEvent, device: BootDevice | None) -> None:
        LOG.info("node %s: %s%s", self.node, event, f" from {device}" if device else "")
        if self.on_change is None:
            return
        try:
            self.on_change(event, device)
        except Exception:  # the lab's failure must not break the BMC protocol
            LOG.exception("node %s: on_change callback failed for %s", self.node, event)
