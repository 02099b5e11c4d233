"""Junos configuration text for a batch of port changes, rendered from validated values.

Only three kinds of value reach the text: interface names (the driver checks
them against the Junos grammar first; the renderer re-checks that each is one
plain token), VLAN ids that are integers in 1-4094, and VLAN names that are
either our canonical `vlan<N>` or an existing name matching a strict pattern.
Nothing a user types can end up in the configuration as syntax.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from metalnet.switches.base import PortChange

SAFE_VLAN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
PLAIN_TOKEN = re.compile(r"[a-z][a-z0-9/:.-]{0,31}")


def check_token(interface: str) -> str:
    """Return `interface` if it is one plain lowercase token, else raise ValueError."""
    if not isinstance(interface, str) or not PLAIN_TOKEN.fullmatch(interface):
        raise ValueError(f"interface {interface!r} cannot be rendered into configuration text")
    return interface


def check_vlan(vlan: object) -> int:
    """Return `vlan` if it is an integer VLAN id in 1-4094, else raise ValueError."""
    if isinstance(vlan, bool) or not isinstance(vlan, int) or not 1 <= vlan <= 4094:
        raise ValueError(f"VLAN {vlan!r} is not an integer within 1-4094")
    return vlan


def canonical_vlan_name(vlan: int) -> str:
    """The name metalnet gives a VLAN it defines: `vlan<id>`."""
    return f"vlan{check_vlan(vlan)}"


def member_name(vlan: int, existing: Mapping[int, str]) -> str:
    """How to reference `vlan` in `members`: the switch's own name for it when safe.

    An existing name that does not fit SAFE_VLAN_NAME is referenced by its
    numeric id instead (Junos resolves numeric members to the vlan-id), so an
    odd name on the device never has to be quoted into our text.
    """
    name = existing.get(vlan)
    if name is None:
        return canonical_vlan_name(vlan)
    return name if SAFE_VLAN_NAME.fullmatch(name) else str(check_vlan(vlan))


def render_port_changes(changes: Sequence[PortChange], existing: Mapping[int, str]) -> str:
    """Text for `load-configuration action="replace"`.

    Each port becomes an access port whose `vlan` statement is replaced (so the
    old membership goes, rather than being added to); each VLAN the switch does
    not define yet (absent from `existing`, id → name) is defined as `vlan<N>`.
    Callers validate interfaces against the platform grammar; this re-checks
    that every value is a plain token or an in-range VLAN id.
    """
    ports = []
    for change in changes:
        member = member_name(change.vlan, existing)
        ports.append(
            f"    {check_token(change.interface)} {{\n"
            "        unit 0 {\n"
            "            family ethernet-switching {\n"
            "                interface-mode access;\n"
            "                replace: vlan {\n"
            f"                    members {member};\n"
            "                }\n"
            "            }\n"
            "        }\n"
            "    }\n"
        )
    missing = sorted({c.vlan for c in changes} - set(existing))
    text = "interfaces {\n" + "".join(ports) + "}\n"
    if missing:
        defined = "".join(
            f"    {canonical_vlan_name(v)} {{\n        vlan-id {v};\n    }}\n" for v in missing
        )
        text += "vlans {\n" + defined + "}\n"
    return text
