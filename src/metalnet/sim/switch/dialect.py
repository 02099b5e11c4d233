"""The two Layer 2 configuration dialects of Junos EX/QFX switches.

Juniper's "Getting Started with Enhanced Layer 2 Software" (Junos OS Ethernet
Switching User Guide) lists how ELS (EX4300, EX2300/3400, QFX5100 and later)
changed the Layer 2 statements of the older software (EX2200/3200/3300/4200/4500/8200,
QFX3500):

- the access/trunk mode is `interface-mode` in ELS and `port-mode` before it, both
  under `unit 0 family ethernet-switching`;
- the native VLAN of a trunk is `native-vlan-id <id>` on the physical interface in
  ELS and `native-vlan-id <name|id>` under `family ethernet-switching` before it;
- `ethernet-switching-options` became `switch-options`.

Each switch accepts only its own dialect: the other one's statements are not in its
schema and a load containing them fails with "syntax error" naming the statement,
as Junos answers any unknown statement. On both, an access port that names no
VLAN is in the VLAN `default` (id 1). Ansible's junipernetworks.junos
`junos_l2_interfaces` (option `enhanced_layer`) and networking-generic-switch's
Junos tests render the same two forms.
"""

from __future__ import annotations

from dataclasses import dataclass

from metalnet.sim.switch.errors import ErrorSpec, RpcFailure
from metalnet.sim.switch.tree import Element, entry_name

SWITCHING = ("interfaces", "interface", "unit", "family", "ethernet-switching")
DEFAULT_VLAN_ID = 1


@dataclass(frozen=True)
class Dialect:
    """What differs between ELS and the older Layer 2 software."""

    name: str
    model: str
    version: str
    mode_statement: str
    native_on_interface: bool
    refused: tuple[tuple[str, ...], ...]
    factory_vlans: str

    def check_statements(self, config: Element) -> None:
        """Refuse, as a syntax error, a statement of the other dialect anywhere in `config`."""
        for node in config.iter():
            if _schema_path(node) in self.refused:
                raise RpcFailure(
                    ErrorSpec("syntax error", path=_edit_path(node), bad_element=node.tag)
                )

    def mode(self, switching: Element) -> str:
        """`access` or `trunk`: the port's mode (access when not configured)."""
        return switching.findtext(self.mode_statement) or "access"

    def native_vlan(self, iface: Element, switching: Element) -> str | None:
        """The native VLAN as configured (an id in ELS, a name or id before it)."""
        holder = iface if self.native_on_interface else switching
        return holder.findtext("native-vlan-id")


ELS = Dialect(
    name="els",
    model="ex4300-48t",
    version="21.4R3-S5.4",
    mode_statement="interface-mode",
    native_on_interface=True,
    refused=(
        (*SWITCHING, "port-mode"),
        (*SWITCHING, "native-vlan-id"),
        ("ethernet-switching-options",),
    ),
    factory_vlans="vlans { default { vlan-id 1; } }\n",
)
LEGACY = Dialect(
    name="legacy",
    model="ex4200-48t",
    version="12.3R12.4",
    mode_statement="port-mode",
    native_on_interface=False,
    refused=(
        (*SWITCHING, "interface-mode"),
        ("interfaces", "interface", "native-vlan-id"),
        ("switch-options",),
    ),
    factory_vlans="",
)
DIALECTS = {d.name: d for d in (ELS, LEGACY)}


def dialect_named(name: str) -> Dialect:
    """`els` or `legacy`, or ValueError naming the bad value."""
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}: expected els or legacy") from None


def _schema_path(node: Element) -> tuple[str, ...]:
    """Tags from the top of the hierarchy to `node`, a group or range read as an interface."""
    tags = []
    while node is not None and node.getparent() is not None:
        tags.append("interface" if node.tag == "interface-range" else node.tag)
        node = node.getparent()
    tags.reverse()
    return tuple(tags[1:]) if tags[:1] == ["groups"] else tuple(tags)


def _edit_path(node: Element) -> str:
    words = []
    parent = node.getparent()
    while parent is not None and parent.getparent() is not None:
        name = entry_name(parent)
        words.append(
            name
            if name is not None and parent.tag == "interface"
            else f"{parent.tag} {name}"
            if name is not None
            else parent.tag
        )
        parent = parent.getparent()
    return "[edit " + " ".join(reversed(words)) + "]"
