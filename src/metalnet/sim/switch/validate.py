"""Commit-time checks and the port→VLAN view of a configuration.

These are the checks that decide whether metalnet's changes are right: a VLAN
member must be defined under `vlans` (by name, or by a vlan-id for a numeric
member), vlan-ids are 1-4094 and unique, an access port has one VLAN, and the
interface must exist on this switch. (A real Junos accepts configuration for
absent interfaces and keeps it inactive; the simulator refuses it so that a
typo in an inventory shows up at once.)
"""

from __future__ import annotations

from collections.abc import Iterable

from metalnet.sim.switch.errors import CHECKOUT_FAILED, ErrorSpec, RpcFailure
from metalnet.sim.switch.tree import Element, walk_entries

BUILTIN_INTERFACES = frozenset({"lo0", "irb", "vme", "me0", "em0"})


def vlan_ids(config: Element) -> dict[str, int | None]:
    """VLAN name → vlan-id (None when absent or not a number)."""
    out: dict[str, int | None] = {}
    for vlan in walk_entries(config, "vlans", "vlan"):
        raw = vlan.findtext("vlan-id")
        out[vlan.findtext("name") or ""] = int(raw) if raw and raw.isdigit() else None
    return out


def resolve_member(member: str, vlans: dict[str, int | None]) -> int | None:
    """The vlan-id a `members` value means: a defined name, or a defined numeric id."""
    if member in vlans:
        return vlans[member]
    if member.isdigit() and int(member) in vlans.values():
        return int(member)
    return None


def check_commit(config: Element, ports: Iterable[str]) -> None:
    """Raise RpcFailure with one `<rpc-error>` per problem, as Junos check-out does."""
    problems = [*_vlan_problems(config), *_interface_problems(config, frozenset(ports))]
    if problems:
        raise RpcFailure(*problems, ErrorSpec(CHECKOUT_FAILED))


def _vlan_problems(config: Element) -> list[ErrorSpec]:
    problems = []
    seen: dict[int, str] = {}
    for vlan in walk_entries(config, "vlans", "vlan"):
        name = vlan.findtext("name") or ""
        raw = vlan.findtext("vlan-id")
        if raw is None:
            continue
        path = f"[edit vlans {name}]"
        if not raw.isdigit() or not 1 <= int(raw) <= 4094:
            problems.append(
                ErrorSpec(
                    f"Value {raw} is not within range (1..4094)", path=path, bad_element="vlan-id"
                )
            )
        elif int(raw) in seen:
            problems.append(
                ErrorSpec(
                    f"l2ald: vlan-id {raw} is already used by vlan {seen[int(raw)]}",
                    path=path,
                    bad_element="vlan-id",
                )
            )
        else:
            seen[int(raw)] = name
    return problems


def _interface_problems(config: Element, ports: frozenset[str]) -> list[ErrorSpec]:
    problems = []
    vlans = vlan_ids(config)
    for iface in walk_entries(config, "interfaces", "interface"):
        name = iface.findtext("name") or ""
        if name not in ports and name not in BUILTIN_INTERFACES:
            problems.append(
                ErrorSpec(
                    f"interface {name} does not exist on this device",
                    path="[edit interfaces]",
                    bad_element=name,
                )
            )
        for unit in iface.iterfind("unit"):
            problems += _switching_problems(name, unit, vlans)
    return problems


def _switching_problems(iface: str, unit: Element, vlans: dict[str, int | None]) -> list[ErrorSpec]:
    problems = []
    logical = f"{iface}.{unit.findtext('name')}"
    for switching in unit.iterfind("family/ethernet-switching"):
        path = (
            f"[edit interfaces {iface} unit {unit.findtext('name')} family ethernet-switching vlan]"
        )
        members = [m.text or "" for m in switching.iterfind("vlan/members")]
        trunk = switching.findtext("interface-mode") == "trunk"
        for member in members:
            if member == "all" and trunk:
                continue
            if resolve_member(member, vlans) is None and member not in vlans:
                problems.append(
                    ErrorSpec(
                        f"l2ald: vlan {member} referenced by interface {logical} is not defined",
                        path=path,
                        bad_element=f"members {member}",
                    )
                )
        if not trunk and len(members) > 1:
            problems.append(
                ErrorSpec(
                    f"Access interface {logical} cannot be a member of more than one vlan",
                    path=path,
                    bad_element="members",
                )
            )
    return problems


def port_vlans(config: Element, ports: Iterable[str]) -> dict[str, int | None]:
    """Each port's VLAN as traffic would see it: the access VLAN of unit 0.

    None when the port is disabled, carries no VLAN, or is a trunk — the lab wires
    a port to a bridge only when it is an enabled access port.
    """
    vlans = vlan_ids(config)
    ifaces = {i.findtext("name"): i for i in walk_entries(config, "interfaces", "interface")}
    out: dict[str, int | None] = {}
    for port in ports:
        iface = ifaces.get(port)
        out[port] = _access_vlan(iface, vlans) if iface is not None else None
    return out


def _access_vlan(iface: Element, vlans: dict[str, int | None]) -> int | None:
    unit = next((u for u in iface.iterfind("unit") if u.findtext("name") == "0"), None)
    if unit is None or iface.find("disable") is not None or unit.find("disable") is not None:
        return None
    switching = unit.find("family/ethernet-switching")
    if switching is None or switching.findtext("interface-mode") == "trunk":
        return None
    members = [m.text or "" for m in switching.iterfind("vlan/members")]
    return resolve_member(members[0], vlans) if len(members) == 1 else None
