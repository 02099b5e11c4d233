"""`SimSwitch`: one simulated Junos EX switch — its configuration, server and test API.

It plays one of two Layer 2 dialects (`dialect.py`): ELS (the default, reported as
an EX4300) or the older software (reported as an EX4200).

A switch runs on an asyncio event loop: either the caller's (`await sw.start()`,
as `metalnet sim switch` does) or a `SimFleet`'s background thread. The API
methods (`port_vlans`, `set_port_vlan_out_of_band`, …) may be called from any
thread; they run on the switch's loop so they never race a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncssh

from metalnet.sim.switch import text, tree, validate
from metalnet.sim.switch.datastore import ConfigDatabase
from metalnet.sim.switch.dialect import ELS, Dialect, dialect_named
from metalnet.sim.switch.faults import Faults
from metalnet.sim.switch.rpcs import DeviceInfo
from metalnet.sim.switch.server import NetconfServer
from metalnet.sim.switch.tree import Element
from metalnet.switches.base import SwitchTarget

log = logging.getLogger("metalnet.sim.switch")

T = TypeVar("T")
CommitCallback = Callable[["SimSwitch", dict[str, int | None]], None]


def port_names(count: int, members: int = 1) -> tuple[str, ...]:
    """The physical ports: ge-<fpc>/0/0 … ge-<fpc>/0/<count-1> for each Virtual
    Chassis member (FPC) 0 … members-1."""
    return tuple(f"ge-{fpc}/0/{i}" for fpc in range(members) for i in range(count))


def factory_config(name: str, ports: tuple[str, ...], dialect: Dialect = ELS) -> Element:
    """The factory-default configuration: every port `family ethernet-switching` with
    no VLAN named, which puts it in VLAN `default` (id 1) implicitly.

    Juniper's "EX4300 Switch Default Configuration" lists `unit 0 { family
    ethernet-switching; }` (with storm control, not modelled) for every ELS port and
    `vlans { default { vlan-id 1; } }`; the EX4200 default has the same port stanza
    and a built-in `default` VLAN that is not written in the configuration.
    """
    port_text = "".join(f"{p} {{ unit 0 {{ family ethernet-switching; }} }}\n" for p in ports)
    return text.parse_text(
        f"system {{ host-name {text.quote(name)}; }}\n"
        f"interfaces {{\n{port_text}}}\n" + dialect.factory_vlans
    )


class SimSwitch:
    """A NETCONF-over-SSH server that answers like a Junos EX switch."""

    def __init__(
        self,
        name: str = "sw1",
        *,
        ports: int = 48,
        username: str = "admin",
        password: str = "admin",
        host: str = "127.0.0.1",
        port: int = 0,
        commit_latency: float = 0.0,
        confirm_unit_seconds: float = 60.0,
        netconf_11: bool = False,
        state_file: str | Path | None = None,
        model: str | None = None,
        version: str | None = None,
        host_key: asyncssh.SSHKey | None = None,
        dialect: str = "els",
        members: int = 1,
    ) -> None:
        """`netconf_11` adds base:1.1 to the hello (published Junos hellos offer
        base:1.0 only); `dialect` is `els` or `legacy`, and `model`/`version` default
        to that dialect's (ex4300-48t 21.4R3-S5.4, ex4200-48t 12.3R12.4); `members`
        Virtual Chassis members of `ports` ports each (ge-0/0/…, ge-1/0/…)."""
        self.name = name
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.ports = port_names(ports, members)
        self.dialect = dialect_named(dialect)
        self.faults = Faults()
        self.state_file = Path(state_file) if state_file else None
        self._callbacks: list[CommitCallback] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db = ConfigDatabase(
            self._initial_config(),
            ports=self.ports,
            commit_latency=commit_latency,
            confirm_unit_seconds=confirm_unit_seconds,
            on_change=self._committed,
            dialect=self.dialect,
        )
        self._server = NetconfServer(
            db=self._db,
            device=DeviceInfo(
                name=name,
                model=model or self.dialect.model,
                version=version or self.dialect.version,
            ),
            faults=self.faults,
            username=username,
            password=password,
            netconf_11=netconf_11,
            host_key=host_key,
        )

    def _initial_config(self) -> Element:
        if self.state_file is not None and self.state_file.exists():
            return text.parse_text(self.state_file.read_text())
        return factory_config(self.name, self.ports, self.dialect)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen on `host:port` (port 0 picks a free one; `self.port` then holds it)."""
        self._loop = asyncio.get_running_loop()
        self.port = await self._server.start(self.host, self.port)
        log.info(
            "%s listening on %s:%d (%d ports)", self.name, self.host, self.port, len(self.ports)
        )

    async def stop(self) -> None:
        """Stop listening, drop sessions, cancel a pending confirmed-commit rollback."""
        await self._server.stop()
        self._db.stop()

    @classmethod
    @contextlib.contextmanager
    def running(cls, name: str = "sw1", **options: object) -> Iterator[SimSwitch]:
        """A started switch on its own background loop, stopped on exit (for tests)."""
        from metalnet.sim.switch.fleet import SimFleet

        with SimFleet() as fleet:
            yield fleet.add(name, **options)

    def target(self, name: str | None = None) -> SwitchTarget:
        """Where drivers find this switch, with its credentials."""
        return SwitchTarget(name or self.name, self.host, self.port, self.username, self.password)

    # ------------------------------------------------------------------ observing

    def on_commit(self, callback: CommitCallback) -> None:
        """Call `callback(switch, port_vlans)` whenever the committed configuration changes.

        This includes commits, automatic rollbacks of unconfirmed commits and
        out-of-band changes. It runs on the switch's event loop: keep it short.
        """
        self._callbacks.append(callback)

    def port_vlans(self) -> dict[str, int | None]:
        """Each port's committed VLAN for untagged traffic (see `validate.port_vlans`):
        1 for a factory port, a trunk's native VLAN, None when the port switches no
        untagged traffic (disabled, not Ethernet switching, trunk without native VLAN)."""
        return self._call(self._port_vlans)

    def _port_vlans(self, config: Element | None = None) -> dict[str, int | None]:
        effective = self._db.effective(self._db.committed if config is None else config)
        return validate.port_vlans(effective, self.ports, self.dialect)

    def committed_text(self) -> str:
        """The committed configuration in Junos curly-brace text."""
        return self._call(lambda: text.render_text(self._db.committed))

    def candidate_text(self) -> str:
        """The shared candidate configuration in Junos curly-brace text."""
        return self._call(lambda: text.render_text(self._db.candidate))

    def lock_holder(self) -> int | None:
        """The session id holding the configuration lock, if any."""
        return self._call(lambda: self._db.lock_owner.id if self._db.lock_owner else None)

    def session_count(self) -> int:
        """Open NETCONF sessions."""
        return self._call(lambda: len(self._server.sessions))

    def confirm_pending(self) -> bool:
        """A confirmed commit awaits confirmation (it will roll back by itself otherwise)."""
        return self._call(lambda: self._db.confirm_pending)

    def drop_sessions(self) -> None:
        """Cut every open session, as a switch reboot or a link flap would."""
        self._call(lambda: [s.drop() for s in list(self._server.sessions.values())])

    def commit_count(self) -> int:
        """Commits since start (the size of the rollback history, capped at 50)."""
        return self._call(lambda: len(self._db.history) - 1)

    def change_count(self) -> int:
        """Changes of the committed configuration since start, uncapped: commits,
        automatic rollbacks and out-of-band changes (what `on_commit` announces)."""
        return self._call(lambda: self._db.changes)

    @property
    def commit_latency(self) -> float:
        """Seconds every commit takes."""
        return self._db.commit_latency

    @commit_latency.setter
    def commit_latency(self, seconds: float) -> None:
        self._db.commit_latency = seconds

    # ------------------------------------------------------------------ drift

    def set_port_vlan_out_of_band(self, interface: str, vlan: int | None) -> None:
        """Move a port behind metalnet's back, as an operator at the console would.

        The port becomes an access port in `vlan` (trunk leftovers removed); `vlan`
        None takes it out of Ethernet switching. The VLAN is defined as `vlan<N>` if
        no VLAN has that id yet.
        """
        if interface not in self.ports:
            raise ValueError(f"{self.name} has no port {interface!r}")
        if vlan is not None and not (isinstance(vlan, int) and 1 <= vlan <= 4094):
            raise ValueError(f"VLAN {vlan!r} is not within 1-4094")
        self._call(
            lambda: self._db.commit_out_of_band(
                lambda config: _move_port(config, interface, vlan, self.dialect), "console"
            )
        )

    # ------------------------------------------------------------------ internals

    def _committed(self, config: Element) -> None:
        """Save and announce a new committed configuration; the port VLANs are worked
        out only when someone listens (a commit's reply waits for this)."""
        if self.state_file is not None:
            _write_atomically(self.state_file, text.render_text(config))
        if not self._callbacks:
            return
        vlans = self._port_vlans(config)
        for callback in self._callbacks:
            try:
                callback(self, vlans)
            except Exception:
                log.exception("%s: on_commit callback failed", self.name)

    def _call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the switch's loop (directly when already on it, or not started)."""
        loop = self._loop
        if loop is None or _on_loop(loop):
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=30)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _move_port(config: Element, interface: str, vlan: int | None, dialect: Dialect) -> None:
    """Make `interface` an access port in `vlan` (validated by the caller), or none."""
    if vlan is None:
        body, definition = "delete: family ethernet-switching;", ""
    else:
        ids = validate.vlan_ids(config)
        name = next((n for n, i in ids.items() if i == vlan), f"vlan{vlan}")
        defined = any(
            v.findtext("name") == name for v in tree.walk_entries(config, "vlans", "vlan")
        )
        definition = (
            ""
            if defined or name == "default"
            else (f"vlans {{ {text.quote(name)} {{ vlan-id {vlan}; }} }}")
        )
        native = "" if dialect.native_on_interface else "delete: native-vlan-id;"
        body = (
            f"family ethernet-switching {{ {dialect.mode_statement} access; {native} "
            f"replace: vlan {{ members {text.quote(name)}; }} }}"
        )
    leftover = "delete: native-vlan-id;" if dialect.native_on_interface else ""
    port = f"{interface} {{ {leftover} unit 0 {{ {body} }} }}"
    fragment = text.parse_text(f"interfaces {{ {port} }} {definition}")
    tree.edit(config, fragment, honour_replace=True)


def _write_atomically(path: Path, content: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    os.replace(tmp, path)
