"""The one interface every switch driver implements, and the errors it raises.

A driver talks to one switch. The layers above hand it *batches* of port changes
because a commit on a real switch costs seconds: one batch is one transaction
(lock, load, commit, unlock), so a fleet-wide change costs one commit per switch.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from metalnet.errors import MetalnetError


@dataclass(frozen=True)
class SwitchTarget:
    """Where a switch is and how to log in; the password never appears in repr."""

    name: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class PortChange:
    """Make `interface` an access port in exactly `vlan` (old membership replaced),
    enabled or disabled. A disabled port keeps its VLAN but passes no traffic: where a
    node may still run a tenant's OS, it is kept off every network."""

    interface: str
    vlan: int
    enabled: bool = True

    def __str__(self) -> str:
        return f"{self.interface}->{self.vlan}{'' if self.enabled else ' disabled'}"


@dataclass(frozen=True)
class PortState:
    """What the device's committed configuration says about one port.

    `vlan` is the port's VLAN when it has exactly one active member, else None;
    `vlans` lists every active member the device reports; `mode` is "access" or
    "trunk" as configured; `native_vlan` is a native VLAN id if one is set. Whether
    all this is what metalnet wants is decided in one place: `switches.drift`.
    """

    interface: str
    vlan: int | None
    enabled: bool = True
    vlans: tuple[int, ...] = ()
    mode: str = "access"
    native_vlan: int | None = None


@dataclass(frozen=True)
class CommitRecord:
    """One transaction attempt on one switch, for the switch change log."""

    switch: str
    changes: tuple[PortChange, ...]
    ok: bool
    seconds: float
    message: str = ""


class SwitchError(MetalnetError):
    """A switch refused or failed an operation. The message names switch, ports, cause."""

    def __init__(self, switch: str, message: str, ports: Iterable[str] = ()) -> None:
        self.switch = switch
        self.ports = tuple(ports)
        self.reason = message
        where = f"switch {switch}"
        if self.ports:
            where += f" port{'s' if len(self.ports) > 1 else ''} {', '.join(self.ports)}"
        super().__init__(f"{where}: {message}")


class SwitchUnreachable(SwitchError):
    """No session could be opened (connection refused, timeout, DNS)."""


class SwitchSessionLost(SwitchError):
    """The session ended mid-operation. The switch discards our uncommitted changes and
    releases the lock; whether a commit in flight took effect is unknown, so the caller
    retries the same (idempotent) batch on a new session."""


class SwitchAuthError(SwitchError):
    """The switch refused the credentials."""


class SwitchLocked(SwitchError):
    """Another session holds the configuration lock beyond our retry budget."""


class CommitRefused(SwitchError):
    """The switch rejected the candidate configuration; nothing was applied."""


class CandidateModified(SwitchError):
    """The shared candidate holds someone else's uncommitted changes; nothing was applied
    (committing would commit their half-finished edit too)."""


class SwitchDriver(abc.ABC):
    """A session to one switch. Use as a context manager or call open()/close().

    Implementations keep the session open between calls so a work queue can reuse
    it, and must leave the device unlocked with no pending candidate changes when
    a transaction fails.
    """

    name: ClassVar[str]

    def __init__(self, target: SwitchTarget, *, timeout: float = 60.0) -> None:
        self.target = target
        self.timeout = timeout

    @classmethod
    @abc.abstractmethod
    def check_interface(cls, interface: str) -> str:
        """Return the interface name if it fits this platform's grammar, else raise ValueError."""

    @abc.abstractmethod
    def open(self) -> None:
        """Open (or re-open) the session."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the session; safe to call twice."""

    @abc.abstractmethod
    def stage(self, changes: Sequence[PortChange]) -> CommitRecord:
        """Commit all changes as one transaction, or none of them (raise SwitchError).

        Where the device offers it the commit is provisional: it rolls back by itself
        unless `confirm()` follows in time, so a lost session never leaves a change
        nobody will confirm. Drivers without provisional commits apply permanently.
        """

    def confirm(self) -> None:  # noqa: B027 - drivers without provisional commits have none
        """Make what `stage` committed permanent."""

    def begin(self) -> None:  # noqa: B027 - drivers that cannot ask ahead do nothing
        """Send the next transaction's first requests (those that need no port change:
        the lock, the reads) without waiting, so the device answers while the caller
        still decides what to stage. `stage` takes their replies; `end` drops them."""

    def end(self) -> None:  # noqa: B027 - nothing begun, nothing to drop
        """Drop what `begin` sent when nothing is staged after all (release the lock)."""

    def apply(self, changes: Sequence[PortChange]) -> CommitRecord:
        """Commit all changes and confirm them: applied for good, or not at all."""
        record = self.stage(changes)
        self.confirm()
        return record

    @abc.abstractmethod
    def read_ports(self, interfaces: Sequence[str] | None = None) -> dict[str, PortState]:
        """Read the committed state of the given ports (all ports when None)."""

    @abc.abstractmethod
    def facts(self) -> dict[str, str]:
        """Model, version and hostname as the device reports them."""

    def __enter__(self) -> SwitchDriver:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
