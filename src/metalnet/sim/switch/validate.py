"""Commit-time checks and the port→VLAN view of a configuration.

Both work on the effective configuration (`inherit.effective`: deactivated
statements dropped, groups and interface ranges applied), as Junos's commit
check-out does. The checks: a VLAN member must be defined under `vlans` (by name,
or by a vlan-id for a numeric member), vlan-ids are 1-4094 and unique, and an
access port has at most one VLAN.

Configuration for an interface the switch does not have is accepted: Junos commits
it and it has no effect until such an interface appears (a missing Virtual
Chassis member, an uninstalled PIC) — "Junos OS Interfaces Fundamentals: physical
interface configuration is applied when the interface is present". Which
interfaces exist is an operational question (`get-interface-information`).
"""

from __future__ import annotations

from collections.abc import Iterable

from metalnet.sim.switch.dialect import DEFAULT_VLAN_ID, ELS, Dialect
from metalnet.sim.switch.errors import CHECKOUT_FAILED, ErrorSpec, RpcFailure
from metalnet.sim.switch.tree import Element, walk_entries
from metalnet.validate import is_digits


def vlan_ids(config: Element) -> dict[str, int | None]:
    """VLAN name → vlan-id (None when absent or not a number)."""
    out: dict[str, int | None] = {}
    for vlan in walk_entries(config, "vlans", "vlan"):
        raw = vlan.findtext("vlan-id")
        out[vlan.findtext("name") or ""] = int(raw) if is_digits(raw or "") else None
    out.setdefault("default", DEFAULT_VLAN_ID)
    return out


def resolve_member(member: str, vlans: dict[str, int | None]) -> int | None:
    """The vlan-id a `members` value means: a defined name, or a defined numeric id."""
    if member in vlans:
        return vlans[member]
    if is_digits(member) and int(member) in vlans.values():
        return int(member)
    return None


def check_commit(config: Element, dialect: Dialect = ELS) -> None:
    """Raise RpcFailure with one `<rpc-error>` per problem, as Junos check-out does.

    `config` is the effective configuration.
    """
    problems = [*_vlan_problems(config), *_interface_problems(config, dialect)]
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
        if not is_digits(raw) or not 1 <= int(raw) <= 4094:
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


def _interface_problems(config: Element, dialect: Dialect) -> list[ErrorSpec]:
    problems = []
    vlans = vlan_ids(config)
    for iface in walk_entries(config, "interfaces", "interface"):
        name = iface.findtext("name") or ""
        for unit in iface.iterfind("unit"):
            for switching in unit.iterfind("family/ethernet-switching"):
                problems += _switching_problems(name, unit, switching, vlans, dialect)
    return problems


def _switching_problems(
    iface: str,
    unit: Element,
    switching: Element,
    vlans: dict[str, int | None],
    dialect: Dialect,
) -> list[ErrorSpec]:
    problems = []
    logical = f"{iface}.{unit.findtext('name')}"
    path = f"[edit interfaces {iface} unit {unit.findtext('name')} family ethernet-switching vlan]"
    members = [m.text or "" for m in switching.iterfind("vlan/members")]
    trunk = dialect.mode(switching) == "trunk"
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


def port_vlans(
    config: Element, ports: Iterable[str], dialect: Dialect = ELS
) -> dict[str, int | None]:
    """Each port's VLAN as untagged traffic sees it, from the effective configuration.

    An access port is in its one VLAN, or in `default` (id 1) when it names none —
    the factory state of every port. A trunk carries untagged frames in its native
    VLAN and drops them without one. None: the port is disabled, not configured for
    Ethernet switching, or a trunk without a native VLAN.
    """
    vlans = vlan_ids(config)
    ifaces = {i.findtext("name"): i for i in walk_entries(config, "interfaces", "interface")}
    out: dict[str, int | None] = {}
    for port in ports:
        iface = ifaces.get(port)
        out[port] = _untagged_vlan(iface, vlans, dialect) if iface is not None else None
    return out


def _untagged_vlan(iface: Element, vlans: dict[str, int | None], dialect: Dialect) -> int | None:
    unit = next((u for u in iface.iterfind("unit") if u.findtext("name") == "0"), None)
    if unit is None or iface.find("disable") is not None or unit.find("disable") is not None:
        return None
    switching = unit.find("family/ethernet-switching")
    if switching is None:
        return None
    if dialect.mode(switching) == "trunk":
        native = dialect.native_vlan(iface, switching)
        return resolve_member(native, vlans) if native else None
    members = [m.text or "" for m in switching.iterfind("vlan/members")]
    if not members:
        return DEFAULT_VLAN_ID
    return resolve_member(members[0], vlans) if len(members) == 1 else None
