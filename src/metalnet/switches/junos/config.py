"""Typed Junos configuration objects, validated once when built, and their one renderer.

Only three kinds of value reach configuration text: interface names that fit the
Junos grammar below, VLAN ids that `metalnet.validate.check_vlan` accepts, and VLAN
names that are either metalnet's `vlan<N>` or an existing name matching a strict
pattern. Nothing a user types can end up in the configuration as syntax.

Two dialects exist on EX/QFX switches (Juniper, "Getting Started with Enhanced
Layer 2 Software", https://www.juniper.net/documentation/us/en/software/junos/
multicast-l2/topics/topic-map/layer-2-understanding.html and the ELS CLI
differences table): ELS writes an access port as `interface-mode access` and a
native VLAN at the interface level (`native-vlan-id`); the older software (EX2200,
EX3200, EX3300, EX4200, EX4500, EX6200, EX8200, QFX3500/QFX3600 before ELS) writes
`port-mode access` and `native-vlan-id` inside `family ethernet-switching`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from metalnet.validate import check_vlan, is_digits

# ge-/xe-/et-/mge- FPC/PIC/port with an optional :channel, or an aggregated
# ethernet ae0..ae127. Anything else (braces, quotes, spaces, newlines) is refused
# before a name can be rendered into configuration text.
INTERFACE_RE = re.compile(
    r"(?:(?:ge|xe|et|mge)-(?:[0-9]|[1-9][0-9])/(?:[0-9]|[1-9][0-9])/(?:[0-9]|[1-9][0-9]{1,2})"
    r"(?::[0-3])?"
    r"|ae(?:[0-9]|[1-9][0-9]|1[01][0-9]|12[0-7]))"
)
SAFE_VLAN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")

# Models that run Junos without ELS (same Juniper page as above).
LEGACY_MODELS = re.compile(r"(ex2200|ex3200|ex3300|ex4200|ex4500|ex4550|ex6200|ex8200|qfx3[56]00)")


class Dialect(enum.StrEnum):
    """The Layer 2 configuration language a switch speaks."""

    ELS = "els"
    LEGACY = "legacy"

    @classmethod
    def of_model(cls, model: str) -> Dialect:
        """The dialect a model ships with, from its `product-model`."""
        return cls.LEGACY if LEGACY_MODELS.match(model.strip().lower()) else cls.ELS


def check_junos_interface(interface: str) -> str:
    """Return `interface` unchanged if it is a Junos switch-port name, else raise ValueError."""
    if not isinstance(interface, str) or not INTERFACE_RE.fullmatch(interface):
        raise ValueError(
            f"interface {interface!r} is not a Junos port name "
            "(expected e.g. ge-0/0/1, xe-0/1/2:3 or ae0..ae127)"
        )
    return interface


def canonical_vlan_name(vlan: int) -> str:
    """The name metalnet gives a VLAN it defines: `vlan<id>`."""
    return f"vlan{check_vlan(vlan)}"


@dataclass(frozen=True)
class VlanDefinition:
    """A VLAN the switch must define: `name { vlan-id id; }`."""

    name: str
    vlan_id: int

    def __post_init__(self) -> None:
        check_vlan(self.vlan_id)
        if not SAFE_VLAN_NAME.fullmatch(self.name):
            raise ValueError(f"VLAN name {self.name!r} cannot be rendered into configuration")


@dataclass(frozen=True)
class AccessPort:
    """An interface that is an access port in exactly one VLAN, nothing else.

    `member` is how the VLAN is referenced: a safe VLAN name or the numeric id
    (Junos resolves a numeric member to the VLAN with that id). `drop_native` deletes
    an interface-level native VLAN (ELS) left from a trunk; it is only set when one
    exists, since deleting an absent statement draws a "statement not found" warning.

    A port not `enabled` gets `disable;` at the interface level: Juniper's "disable
    (Interface)" statement (https://juniper.net/documentation/en_US/junos13.2/topics/
    reference/configuration-statement/disable-edit-interfaces.html) may stand at
    `[edit interfaces interface-name]` or at `[... unit logical-unit-number]`, and
    either level takes the port down. An enabled port has the statement deleted where
    the switch has it (`enable_at`: "interface", "unit"), for the same warning's sake.
    """

    interface: str
    member: str
    drop_native: bool = False
    enabled: bool = True
    enable_at: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        check_junos_interface(self.interface)
        if not (SAFE_VLAN_NAME.fullmatch(self.member) or _is_vlan_id(self.member)):
            raise ValueError(f"VLAN member {self.member!r} cannot be rendered into configuration")


def _is_vlan_id(text: str) -> bool:
    return is_digits(text) and 1 <= int(text) <= 4094


def member_for(vlan: int, names: dict[int, str]) -> str:
    """How to reference `vlan`: the switch's own name when safe, else its number."""
    name = names.get(check_vlan(vlan))
    if name is None:
        return canonical_vlan_name(vlan)
    return name if SAFE_VLAN_NAME.fullmatch(name) else str(vlan)


def render(ports: Iterable[AccessPort], vlans: Iterable[VlanDefinition], dialect: Dialect) -> str:
    """Text for `load-configuration action="replace"`.

    `replace: family ethernet-switching` makes each port exactly an access port in
    its one VLAN: trunk mode, other members and (older dialect) a native VLAN inside
    the family go with the old stanza. ELS keeps the native VLAN at the interface
    level, so it is deleted there when the port has one. A disabled port keeps its
    VLAN and gets `disable;`; an enabled one loses any `disable` it has.
    """
    body = "".join(_port_text(p, dialect) for p in ports)
    text = "interfaces {\n" + body + "}\n"
    defined = "".join(f"{v.name} {{ vlan-id {v.vlan_id}; }}\n" for v in vlans)
    if defined:
        text += "vlans {\n" + defined + "}\n"
    return text


def _port_text(port: AccessPort, dialect: Dialect) -> str:
    mode = "interface-mode access" if dialect is Dialect.ELS else "port-mode access"
    native = "    delete: native-vlan-id;\n" if port.drop_native and dialect is Dialect.ELS else ""
    if not port.enabled:
        native = "    disable;\n" + native
    elif "interface" in port.enable_at:
        native = "    delete: disable;\n" + native
    unit = "        delete: disable;\n" if port.enabled and "unit" in port.enable_at else ""
    return (
        f"{port.interface} {{\n{native}"
        f"    unit 0 {{\n{unit}"
        "        replace: family ethernet-switching {\n"
        f"            {mode};\n"
        f"            vlan {{ members {port.member}; }}\n"
        "        }\n"
        "    }\n"
        "}\n"
    )
