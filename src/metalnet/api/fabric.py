"""The fabric: what every switch port is in, the database's wish beside the device's word.

Read-only, for the dashboard and anyone else. An admin sees every port every switch
reports; a project token sees only the ports of the nodes its live instances hold,
and learns nothing of other projects (their VLANs show as "unknown"). Device reads go
through the switch service's read and are shared by all callers for READ_TTL seconds,
so open pages cost each switch at most one read per READ_TTL however many are open.
Whether a port is where the database wants it is the one drift rule's to say
(`switches.drift.in_sync`); this module only reports it.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from metalnet import audit, metrics
from metalnet.api.auth import Caller, Db, Principal
from metalnet.api.errors import ERROR_RESPONSES
from metalnet.api.routing import Route
from metalnet.config import Settings
from metalnet.db.models import Instance, Network, Project, Switch, SwitchChange, SwitchPort
from metalnet.lifecycle.instances import LIVE
from metalnet.switches.base import PortState, SwitchError
from metalnet.switches.drift import describe, in_sync
from metalnet.switches.reconcile import reconcile
from metalnet.switches.service import SwitchService
from metalnet.validate import is_digits

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES, route_class=Route)

READ_TTL = 0.5  # seconds one device read serves every caller; a change shows within a poll + this
RECENT_COMMITS = 1000  # change-log rows searched for each port's last commit


@dataclass(frozen=True)
class DeviceRead:
    """One read of a switch's committed port state, or why it failed."""

    at: float
    ports: dict[str, PortState]
    error: str = ""


class DeviceReads:
    """Reads of every switch, each shared by all callers while younger than `ttl`."""

    def __init__(self, switching: SwitchService, ttl: float = READ_TTL) -> None:
        self.switching = switching
        self.ttl = ttl
        self.reads = 0
        self._cache: dict[str, DeviceRead] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, switch: str) -> DeviceRead:
        """The switch's ports, read now unless a read younger than `ttl` is at hand."""
        with self._guard:
            lock = self._locks.setdefault(switch, threading.Lock())
        with lock:  # callers arriving together wait for one read instead of making their own
            cached = self._cache.get(switch)
            if cached is not None and time.monotonic() - cached.at < self.ttl:
                return cached
            try:
                read = DeviceRead(time.monotonic(), self.switching.read_ports(switch))
            except SwitchError as exc:
                read = DeviceRead(time.monotonic(), {}, str(exc))
            self.reads += 1
            self._cache[switch] = read
            return read


_reads_lock = threading.Lock()


async def device_reads(request: Request) -> DeviceReads:
    """The app's shared device reads, made on first use (a coroutine: no I/O here)."""
    state = request.app.state
    with _reads_lock:
        if getattr(state, "device_reads", None) is None:
            state.device_reads = DeviceReads(SwitchService(state.db))
        return state.device_reads


Reads = Annotated[DeviceReads, Depends(device_reads)]


def front_panel_key(interface: str) -> tuple:
    """ge-0/0/2 before ge-0/0/10: the order of the front panel."""
    return tuple(int(p) if is_digits(p) else p for p in re.split(r"(\d+)", interface))


def port_in(vlan: int | None, settings: Settings, networks: dict[int, Network]) -> dict:
    """What a VLAN is, as far as this caller may know."""
    if vlan == settings.service_vlan:
        return {"kind": "service"}
    if vlan == settings.parking_vlan:
        return {"kind": "parking"}
    if vlan in networks:
        net = networks[vlan]
        return {"kind": "project", "project": net.project.name, "network": net.name}
    return {"kind": "unknown"}


def _actual_view(state: PortState | None) -> dict | None:
    if state is None:
        return None
    return {
        "vlan": state.vlan,
        "vlans": list(state.vlans),
        "mode": state.mode,
        "enabled": state.enabled,
        "native_vlan": state.native_vlan,
        "text": describe(state),
    }


def _last_commits(s, switches: list[str]) -> dict[tuple[str, str], dict]:
    """(switch, interface) -> the newest change-log entry that touched that port."""
    query = (
        select(SwitchChange)
        .where(SwitchChange.switch_name.in_(switches))
        .order_by(SwitchChange.id.desc())
        .limit(RECENT_COMMITS)
    )
    last: dict[tuple[str, str], dict] = {}
    for change in s.scalars(query):
        for port in change.ports:
            last.setdefault(
                (change.switch_name, port["interface"]),
                {
                    "at": change.at.isoformat() if change.at else None,
                    "vlan": port["vlan"],
                    "ok": change.ok,
                    "seconds": round(change.seconds, 3),
                    "size": len(change.ports),
                },
            )
    return last


@dataclass(frozen=True)
class _Known:
    """One port as the database knows it."""

    desired_vlan: int | None
    node: str | None
    node_state: str | None
    instance: dict | None
    desired_enabled: bool = True


def _known_ports(s, who: Principal) -> dict[str, dict[str, _Known]]:
    """switch -> interface -> what the database says; a project sees its nodes' ports only."""
    live = select(Instance).where(Instance.state.in_(LIVE))
    if not who.admin:
        live = live.join(Project).where(Project.name == who.project)
    holding = {i.node_id: i for i in s.scalars(live)}
    ports = select(SwitchPort).join(Switch).order_by(Switch.name)
    known: dict[str, dict[str, _Known]] = {}
    if who.admin:
        for name in s.scalars(select(Switch.name)):
            known[name] = {}
    for port in s.scalars(ports):
        node = port.nic.node if port.nic else None
        inst = holding.get(node.id) if node else None
        if not who.admin and inst is None:
            continue
        known.setdefault(port.switch.name, {})[port.interface] = _Known(
            port.desired_vlan,
            node.name if node else None,
            node.state if node else None,
            _instance_brief(inst) if inst else None,
            port.desired_enabled,
        )
    return known


def _instance_brief(inst: Instance) -> dict:
    return {"name": inst.name, "project": inst.project.name, "state": inst.state, "step": inst.step}


@router.get("/fabric")
def fabric(db: Db, who: Caller, reads: Reads) -> dict:
    """Every visible port of every switch: desired and actual VLAN, what it is in, drift.

    The devices are read before the database: desired state is written before a device
    is touched, so a port shown drifting was really behind the database at some moment
    (a move in flight), never ahead of a stale snapshot.
    """
    with db.session() as s:
        names = list(_known_ports(s, who))
    with ThreadPoolExecutor(max_workers=min(16, len(names) or 1)) as pool:
        device = dict(zip(names, pool.map(reads.get, names), strict=True))
    with db.session() as s:
        known = _known_ports(s, who)
        networks = select(Network).join(Project)
        if not who.admin:
            networks = networks.where(Project.name == who.project)
        by_vlan = {n.vlan: n for n in s.scalars(networks)}
        last = _last_commits(s, list(known))
        device = {name: device.get(name) or reads.get(name) for name in known}
        switches = [
            _switch_view(db.settings, name, ports, device[name], by_vlan, last, who.admin)
            for name, ports in known.items()
        ]
    return {
        "switches": switches,
        "service_vlan": db.settings.service_vlan,
        "parking_vlan": db.settings.parking_vlan,
        "queue_depth": queue_depth(),
        "read_ttl": reads.ttl,
    }


def queue_depth() -> float | None:
    """Port changes waiting for a commit in this process's switch queue."""
    return metrics.REGISTRY.get_sample_value("metalnet_switch_queue_depth")


@router.get("/switch-queue")
def switch_queue(who: Caller) -> dict:
    """The queue depth alone, for a change-log chart that need not read any switch."""
    who.require_admin()
    return {"depth": queue_depth()}


def _switch_view(
    settings: Settings,
    name: str,
    known: dict[str, _Known],
    read: DeviceRead,
    networks: dict[int, Network],
    last: dict[tuple[str, str], dict],
    admin: bool,
) -> dict:
    interfaces = set(known) | (set(read.ports) if admin else set())
    ports = []
    for interface in sorted(interfaces, key=front_panel_key):
        wish = known.get(interface, _Known(None, None, None, None))
        actual = read.ports.get(interface)
        unread = bool(read.error)  # then the port is shown where the database wants it
        vlan = wish.desired_vlan if unread else (actual.vlan if actual else None)
        ports.append(
            {
                "interface": interface,
                "node": wish.node,
                "node_state": wish.node_state,
                "instance": wish.instance,
                "desired_vlan": wish.desired_vlan,
                "desired_enabled": wish.desired_enabled,
                "actual": _actual_view(actual),
                "in_sync": None
                if unread
                else in_sync(wish.desired_vlan, actual, wish.desired_enabled),
                "in": port_in(vlan, settings, networks),
                "last_commit": last.get((name, interface)),
            }
        )
    return {"name": name, "error": read.error, "ports": ports}


@router.post("/reconcile/dry-run")
def reconcile_dry_run(db: Db, who: Caller, reads: Reads) -> list[dict]:
    """What `metalnet reconcile --dry-run` reports: drift per switch, nothing fixed."""
    who.require_admin()
    try:
        reports = reconcile(db, fix=False, service=reads.switching)
    except Exception as exc:
        audit.record(db, who.actor, "reconcile", "dry run", False, str(exc))
        raise
    audit.record(db, who.actor, "reconcile", "dry run", True)
    return [r.as_dict() for r in reports]
