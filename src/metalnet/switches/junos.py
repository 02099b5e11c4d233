"""Juniper Junos driver (NETCONF over SSH with ncclient)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

from lxml import etree
from ncclient import manager
from ncclient.manager import Manager
from ncclient.operations import RPCError, TimeoutExpiredError
from ncclient.transport import AuthenticationError, NCClientError, TransportError
from ncclient.transport import session as ncclient_session
from paramiko import SSHException

from metalnet.switches.base import (
    CommitRefused,
    CommitResult,
    PortChange,
    PortState,
    SwitchAuthError,
    SwitchDriver,
    SwitchError,
    SwitchLocked,
    SwitchSessionLost,
    SwitchTarget,
    SwitchUnreachable,
)
from metalnet.switches.render import check_vlan, render_port_changes

T = TypeVar("T")

# ncclient's session thread sends queued RPCs only after a select() on the socket
# times out, 100 ms by default: six RPCs per transaction cost 0.6 s of pure waiting.
# 10 ms keeps the idle cost of an open session at ~100 wake-ups a second.
ncclient_session.TICK = 0.01

# ge-/xe-/et-/mge- FPC/PIC/port with an optional :channel, or an aggregated
# ethernet ae0..ae127. Anything else (braces, quotes, spaces, newlines) is refused
# here, before a name can be rendered into configuration text.
INTERFACE_RE = re.compile(
    r"(?:(?:ge|xe|et|mge)-(?:[0-9]|[1-9][0-9])/(?:[0-9]|[1-9][0-9])/(?:[0-9]|[1-9][0-9]{1,2})"
    r"(?::[0-3])?"
    r"|ae(?:[0-9]|[1-9][0-9]|1[01][0-9]|12[0-7]))"
)


def check_junos_interface(interface: str) -> str:
    """Return `interface` unchanged if it is a Junos switch-port name, else raise ValueError."""
    if not isinstance(interface, str) or not INTERFACE_RE.fullmatch(interface):
        raise ValueError(
            f"interface {interface!r} is not a Junos port name "
            "(expected e.g. ge-0/0/1, xe-0/1/2:3 or ae0..ae127)"
        )
    return interface


def _one_line(message: str) -> str:
    """Junos messages span lines (lock holders, paths); errors here end in one line."""
    return " ".join(message.split())


def _rpc_error_text(error: RPCError) -> str:
    """The switch's own words: every `<error-message>` of the reply."""
    parts = [e.message for e in getattr(error, "errors", None) or [error] if e.message]
    messages = [_one_line(p) for p in parts]
    return "; ".join(m.removeprefix("error: ") for m in messages) or "operation failed"


class JunosDriver(SwitchDriver):
    """A NETCONF session to one Junos switch, kept open across calls.

    `apply` is one transaction: lock the candidate (retrying while another
    session holds it), read which VLANs exist, load rendered text with
    action="replace", commit confirmed, confirm, unlock. Any failure discards
    the candidate and unlocks before raising, so the switch is never left locked
    or half-changed. A commit confirmed means that even a session lost between
    the two commits leaves the switch to roll back by itself.
    """

    name: ClassVar[str] = "junos"

    def __init__(
        self,
        target: SwitchTarget,
        *,
        timeout: float = 60.0,
        commit_timeout: float = 600.0,
        lock_wait: float = 60.0,
        confirm_minutes: int = 5,
    ) -> None:
        """`timeout` bounds connecting and ordinary RPCs; commits may take up to
        `commit_timeout` (real switches take minutes); a held lock is retried for
        `lock_wait` seconds; `confirm_minutes` 0 commits once, without confirmation."""
        super().__init__(target, timeout=timeout)
        self.commit_timeout = commit_timeout
        self.lock_wait = lock_wait
        self.confirm_minutes = confirm_minutes
        self._manager: Manager | None = None

    @classmethod
    def check_interface(cls, interface: str) -> str:
        return check_junos_interface(interface)

    # ------------------------------------------------------------------ session

    def open(self) -> None:
        self.close()
        t = self.target
        try:
            self._manager = manager.connect(
                host=t.host,
                port=t.port,
                username=t.username,
                password=t.password,
                device_params={"name": "junos"},
                hostkey_verify=False,
                look_for_keys=False,
                allow_agent=False,
                timeout=self.timeout,
            )
        except AuthenticationError as exc:
            raise SwitchAuthError(t.name, f"login refused for user {t.username!r}") from exc
        except (NCClientError, SSHException, OSError) as exc:
            raise SwitchUnreachable(
                t.name, f"no NETCONF session to {t.host}:{t.port}: {_one_line(str(exc))}"
            ) from exc
        self._manager.timeout = self.timeout

    def close(self) -> None:
        session, self._manager = self._manager, None
        if session is not None and session.connected:
            with contextlib.suppress(NCClientError, SSHException, OSError):
                session.close_session()

    def _first(self, request: Callable[[], T]) -> T:
        """Run the first request of a call, reconnecting once if the session had died."""
        if self._manager is None or not self._manager.connected:
            self.open()
        try:
            return request()
        except SwitchSessionLost:
            self.open()
            return request()

    def _send(
        self,
        op: etree._Element,
        ports: Sequence[str] = (),
        *,
        refused: type[SwitchError] = SwitchError,
        timeout: float | None = None,
    ) -> etree._Element:
        """Send one RPC; return the `<rpc-reply>` root or raise a SwitchError naming the switch."""
        session = self._manager
        name = self.target.name
        if session is None:
            raise SwitchSessionLost(name, "no open session", ports)
        session.timeout = timeout or self.timeout
        try:
            reply = session.rpc(op)
        except RPCError as exc:
            raise refused(name, _rpc_error_text(exc), ports) from exc
        except TimeoutExpiredError as exc:
            message = f"no reply to {op.tag} within {session.timeout:.0f} s"
            raise SwitchError(name, message, ports) from exc
        except (TransportError, OSError) as exc:
            message = f"session lost during {op.tag}: {_one_line(str(exc)) or 'connection closed'}"
            raise SwitchSessionLost(name, message, ports) from exc
        finally:
            session.timeout = self.timeout
        return reply.xpath("/*")[0]

    # ------------------------------------------------------------------ apply

    def apply(self, changes: Sequence[PortChange]) -> CommitResult:
        batch = self._validated(changes)
        name = self.target.name
        if not batch:
            return CommitResult(name, (), 0.0, "nothing to change")
        ports = [c.interface for c in batch]
        started = time.monotonic()
        self._first(lambda: self._lock(ports))
        try:
            existing = self._vlan_names(ports)
            text = render_port_changes(batch, existing)
            self._send(_load_text(text), ports, refused=CommitRefused)
            if self.confirm_minutes:
                self._commit(ports, confirm_minutes=self.confirm_minutes)
            self._commit(ports)
        except SwitchSessionLost:
            self._manager = None  # the switch discards and unlocks for a lost session
            raise
        except BaseException:
            self._cleanup("discard-changes")
            raise
        finally:
            self._cleanup("unlock-configuration")
        seconds = time.monotonic() - started
        return CommitResult(name, batch, seconds, f"committed {len(batch)} port change(s)")

    def _validated(self, changes: Sequence[PortChange]) -> tuple[PortChange, ...]:
        """Check every value before anything is sent; one interface, one VLAN."""
        wanted: dict[str, int] = {}
        for change in changes:
            check_junos_interface(change.interface)
            check_vlan(change.vlan)
            if wanted.setdefault(change.interface, change.vlan) != change.vlan:
                raise ValueError(
                    f"interface {change.interface} is given two VLANs in one batch "
                    f"({wanted[change.interface]} and {change.vlan})"
                )
        return tuple(PortChange(i, v) for i, v in wanted.items())

    def _lock(self, ports: Sequence[str]) -> None:
        """Take the configuration lock, backing off while another session holds it."""
        deadline = time.monotonic() + self.lock_wait
        delay = 0.1
        while True:
            try:
                self._send(etree.Element("lock-configuration"), ports)
                return
            except SwitchSessionLost:
                raise
            except SwitchError as exc:
                if "configuration database locked" not in exc.reason:
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SwitchLocked(self.target.name, exc.reason, ports) from exc
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)

    def _vlan_names(self, ports: Sequence[str]) -> dict[int, str]:
        """VLAN id → name as the candidate defines them, so we reuse existing VLANs."""
        reply = self._send(_get_configuration("candidate", _filter(vlans=True)), ports)
        names: dict[int, str] = {}
        for vlan_id, vlan_name in _vlans(reply).items():
            names.setdefault(vlan_id, vlan_name)
        return names

    def _commit(self, ports: Sequence[str], *, confirm_minutes: int | None = None) -> None:
        op = etree.Element("commit-configuration")
        if confirm_minutes:
            etree.SubElement(op, "confirmed")
            etree.SubElement(op, "confirm-timeout").text = str(confirm_minutes)
        self._send(op, ports, refused=CommitRefused, timeout=self.commit_timeout)

    def _cleanup(self, rpc: str) -> None:
        """Best effort: if the session is gone, the switch already discarded and unlocked."""
        if self._manager is None or not self._manager.connected:
            return
        with contextlib.suppress(SwitchError):
            self._send(etree.Element(rpc))

    # ------------------------------------------------------------------ reading

    def read_ports(self, interfaces: Sequence[str] | None = None) -> dict[str, PortState]:
        names = [check_junos_interface(i) for i in interfaces] if interfaces is not None else None
        op = _get_configuration("committed", _filter(interfaces=names or [], vlans=True))
        reply = self._first(lambda: self._send(op, names or ()))
        vlans = _vlans(reply)
        states = {}
        for iface in reply.iterfind(".//configuration/interfaces/interface"):
            port = iface.findtext("name") or ""
            if INTERFACE_RE.fullmatch(port) and (names is None or port in names):
                states[port] = _port_state(port, iface, vlans)
        for port in names or ():
            states.setdefault(port, PortState(port, None))
        return states

    def facts(self) -> dict[str, str]:
        reply = self._first(lambda: self._send(etree.Element("get-software-information")))
        info = reply.find(".//software-information")
        if info is None:
            raise SwitchError(self.target.name, "get-software-information returned no information")
        version = info.findtext("junos-version") or _version_from_packages(info)
        return {
            "model": info.findtext("product-model") or "",
            "version": version,
            "hostname": info.findtext("host-name") or "",
        }


def _load_text(text: str) -> etree._Element:
    op = etree.Element("load-configuration", action="replace", format="text")
    etree.SubElement(op, "configuration-text").text = text
    return op


def _get_configuration(database: str, flt: etree._Element) -> etree._Element:
    op = etree.Element("get-configuration", database=database, format="xml")
    op.append(flt)
    return op


def _filter(*, interfaces: Sequence[str] | None = None, vlans: bool = False) -> etree._Element:
    """A `<configuration>` subtree filter: the named interfaces (all for []), and vlans."""
    config = etree.Element("configuration")
    if interfaces is not None:
        holder = etree.SubElement(config, "interfaces")
        for name in interfaces:
            etree.SubElement(etree.SubElement(holder, "interface"), "name").text = name
    if vlans:
        etree.SubElement(config, "vlans")
    return config


def _vlans(reply: etree._Element) -> dict[int, str]:
    """VLAN id → name from a configuration reply (names without a numeric id skipped)."""
    out = {}
    for vlan in reply.iterfind(".//configuration/vlans/vlan"):
        raw = (vlan.findtext("vlan-id") or "").strip()
        if raw.isdigit():
            out[int(raw)] = vlan.findtext("name") or ""
    return out


def _port_state(port: str, iface: etree._Element, vlans: dict[int, str]) -> PortState:
    by_name = {n: i for i, n in vlans.items()}
    unit = next((u for u in iface.iterfind("unit") if u.findtext("name") == "0"), None)
    members = [] if unit is None else [m.text or "" for m in unit.iterfind(".//vlan/members")]
    ids = []
    for member in members:
        member = member.strip()
        if member in by_name:
            ids.append(by_name[member])
        elif member.isdigit():
            ids.append(int(member))
    disabled = iface.find("disable") is not None or (
        unit is not None and unit.find("disable") is not None
    )
    return PortState(port, ids[0] if ids else None, enabled=not disabled, vlans=tuple(ids))


def _version_from_packages(info: etree._Element) -> str:
    """Older Junos reports the version only as `JUNOS … [version]` in package comments."""
    for comment in info.iterfind(".//package-information/comment"):
        match = re.search(r"\[([^\]]+)\]", comment.text or "")
        if match:
            return match.group(1)
    return ""
