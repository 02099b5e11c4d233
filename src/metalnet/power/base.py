"""The one interface every BMC (power) driver implements, and the errors it raises.

The lifecycle engine only needs five things from a server's BMC: power on, power off,
reboot, read the power state, and choose the next boot device (PXE for the
provisioning ramdisk, disk for the deployed image). Redfish and IPMI drivers differ
in everything else, so they hide it behind `PowerDriver`.

A BMC that never answers must not stall a lifecycle step forever: the public methods
here run the driver's work under a deadline (`timeout`), whatever the client library
does internally, and turn silence into `BmcUnreachable` naming the node and its BMC.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

DEFAULT_TIMEOUT = 10.0
"""Seconds a whole BMC call may take (matches the `bmc_timeout` setting's default)."""

T = TypeVar("T")


class PowerState(StrEnum):
    """Whether the server is powered; transitional states count as their destination."""

    ON = "on"
    OFF = "off"


class BootDevice(StrEnum):
    """The devices the lifecycle boots from: the network (ramdisk) or the local disk."""

    PXE = "pxe"
    DISK = "disk"


@dataclass(frozen=True)
class BmcTarget:
    """Which node's BMC to talk to and how to log in; the password never appears in repr."""

    node: str
    url: str
    username: str
    password: str = field(repr=False)


def display_url(url: str) -> str:
    """The URL with any user:password@ part removed, safe to log and to show to users."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class PowerError(Exception):
    """A BMC refused or failed an operation; the message names node, BMC and cause."""

    def __init__(self, node: str, bmc: str, message: str) -> None:
        self.node = node
        self.bmc = display_url(bmc)
        self.reason = message
        super().__init__(f"node {node} BMC {self.bmc}: {message}")


class BmcUnreachable(PowerError):
    """The BMC did not answer: nothing listening, network down, or no reply in time."""


class BmcAuthError(PowerError):
    """The BMC answered but refused the username or password."""


class PowerDriver(abc.ABC):
    """Power control of one node through its BMC.

    Subclasses implement the `_do_*` methods with their protocol's client library
    and translate its errors into `PowerError` subclasses. Callers use the public
    methods, which bound every call by `timeout` seconds.

    `power_on` and `power_off` are idempotent (a node already in that state is left
    alone); `reboot` powers on a node that is off. All return once the BMC accepted
    the request; a real server may take longer to actually change state.
    """

    def __init__(self, target: BmcTarget, timeout: float = DEFAULT_TIMEOUT) -> None:
        if timeout <= 0:
            raise ValueError(f"BMC timeout must be positive, not {timeout!r}")
        self.target = target
        self.timeout = timeout

    def power_on(self) -> None:
        """Power the node on (no-op if it is on)."""
        self._bounded("power on", self._do_power_on)

    def power_off(self) -> None:
        """Power the node off immediately, without waiting for its OS (no-op if off)."""
        self._bounded("power off", self._do_power_off)

    def reboot(self) -> None:
        """Hard-reset a running node, or power on a node that is off."""
        self._bounded("reboot", self._do_reboot)

    def power_state(self) -> PowerState:
        """Ask the BMC whether the node is powered."""
        return self._bounded("read power state", self._do_power_state)

    def set_boot_device(self, device: BootDevice, persistent: bool = False) -> None:
        """Boot from `device` at the next boot only, or at every boot if `persistent`."""
        self._bounded("set boot device", lambda: self._do_set_boot_device(device, persistent))

    @abc.abstractmethod
    def close(self) -> None:
        """Log out of the BMC and release the connection; safe to call twice."""

    def __enter__(self) -> PowerDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def error(self, cls: type[PowerError], message: str) -> PowerError:
        """An error of kind `cls` about this driver's node and BMC, for subclasses to raise."""
        return cls(self.target.node, self.target.url, message)

    @abc.abstractmethod
    def _do_power_on(self) -> None: ...

    @abc.abstractmethod
    def _do_power_off(self) -> None: ...

    @abc.abstractmethod
    def _do_reboot(self) -> None: ...

    @abc.abstractmethod
    def _do_power_state(self) -> PowerState: ...

    @abc.abstractmethod
    def _do_set_boot_device(self, device: BootDevice, persistent: bool) -> None: ...

    def _abandon(self) -> None:  # noqa: B027 - optional hook, most drivers need nothing
        """Forget the connection after a call overran its deadline (its thread may live on)."""

    def _bounded(self, what: str, work: Callable[[], T]) -> T:
        """Run `work` in a daemon thread and wait at most `timeout` seconds for it.

        Client libraries retry on their own schedules (pyghmi re-sends and re-logs in
        for tens of seconds); a thread with a deadline is the one bound they all obey.
        The thread is a daemon so an abandoned call never blocks interpreter exit.
        """
        outcome: list[T] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                outcome.append(work())
            except BaseException as exc:  # re-raised in the caller's thread below
                failure.append(exc)

        worker = threading.Thread(target=run, name=f"bmc-{self.target.node}", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            self._abandon()
            raise self.error(BmcUnreachable, f"{what}: no answer within {self.timeout:g} s")
        if failure:
            raise failure[0]
        return outcome[0]
