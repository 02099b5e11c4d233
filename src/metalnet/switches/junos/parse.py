"""Reading Junos replies: configuration, software, interfaces and commit results.

Every function takes a reply's root element as the device sends it. Real replies
carry namespaces (`urn:ietf:params:xml:ns:netconf:base:1.0` on `<rpc-reply>`,
`junos-interface` on `<interface-information>`, `junos:` attributes) and pad text
with newlines (e.g. `<name>\\nge-0/0/0\\n</name>`, see tests/data/junos/), so
`plain()` drops namespaces first and every text is stripped.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from lxml import etree

from metalnet.switches.base import PortState
from metalnet.switches.junos.config import INTERFACE_RE, Dialect
from metalnet.validate import DEFAULT_VLAN, is_digits


def plain(root: etree._Element) -> etree._Element:
    """A copy of `root` with every element and attribute namespace dropped."""
    root = etree.fromstring(etree.tostring(root))
    for el in root.iter():
        if isinstance(el.tag, str):
            el.tag = etree.QName(el).localname
        for key in [k for k in el.attrib if k.startswith("{")]:
            el.attrib[etree.QName(key).localname] = el.attrib.pop(key)
    return root


def text_of(el: etree._Element | None, tag: str) -> str:
    """The stripped text of `el`'s child `tag` ('' when absent)."""
    return "" if el is None else (el.findtext(tag) or "").strip()


def active(el: etree._Element | None) -> bool:
    """Whether a statement is in force: present and not deactivated.

    Junos XML marks a deactivated statement `inactive="inactive"`; the YANG-style
    replies mark it `jcmd:active="false"` (namespace dropped by `plain`).
    """
    if el is None:
        return False
    return el.get("inactive") != "inactive" and el.get("active") != "false"


def children(parent: etree._Element | None, tag: str) -> list[etree._Element]:
    """The active children `tag` of `parent`."""
    return [] if parent is None else [c for c in parent.iterfind(tag) if active(c)]


def child(parent: etree._Element | None, tag: str) -> etree._Element | None:
    found = children(parent, tag)
    return found[0] if found else None


def configuration(root: etree._Element) -> etree._Element | None:
    """The `<configuration>` of a get-configuration reply (namespaces dropped)."""
    root = plain(root)
    return root if root.tag == "configuration" else root.find(".//configuration")


# ---------------------------------------------------------------------- VLANs


def vlan_ids(config: etree._Element | None) -> dict[str, int]:
    """VLAN name → id of every active VLAN with a numeric id."""
    out = {}
    for vlan in children(child(config, "vlans"), "vlan"):
        raw = text_of(vlan, "vlan-id")
        if is_digits(raw):
            out[text_of(vlan, "name")] = int(raw)
    return out


def vlan_names(config: etree._Element | None) -> dict[int, str]:
    """VLAN id → first name defining it, so metalnet reuses the switch's own names."""
    names: dict[int, str] = {}
    for name, vlan_id in vlan_ids(config).items():
        names.setdefault(vlan_id, name)
    return names


def vlan_name_taken(config: etree._Element | None, name: str) -> int | None:
    """The id of the VLAN called `name`, active or not (None when no such VLAN)."""
    vlans = config.find("vlans") if config is not None else None
    for vlan in [] if vlans is None else vlans.iterfind("vlan"):
        if text_of(vlan, "name") == name:
            raw = text_of(vlan, "vlan-id")
            return int(raw) if is_digits(raw) else 0
    return None


# ---------------------------------------------------------------------- ports


def port_states(config: etree._Element | None, wanted: list[str] | None) -> dict[str, PortState]:
    """The state of each switch port in `config` (only `wanted` ones when given).

    Both dialects read alike: the mode from `interface-mode` (ELS) or `port-mode`,
    the native VLAN from the interface (ELS) or the family."""
    ids = vlan_ids(config)
    listed = _vlan_interfaces(config, ids)
    states = {}
    for iface in children(child(config, "interfaces"), "interface"):
        name = text_of(iface, "name")
        if INTERFACE_RE.fullmatch(name) and (wanted is None or name in wanted):
            states[name] = _port_state(name, iface, ids, listed.get(name, ()))
    for name in wanted or ():
        states.setdefault(name, PortState(name, None))
    return states


def _port_state(
    name: str, iface: etree._Element, ids: dict[str, int], extra: tuple[int, ...]
) -> PortState:
    unit = next((u for u in children(iface, "unit") if text_of(u, "name") == "0"), None)
    family = child(child(unit, "family"), "ethernet-switching")
    enabled = child(iface, "disable") is None and child(unit, "disable") is None
    if family is None:
        return PortState(name, None, enabled=enabled)
    members = [text_of(m, ".") for m in children(child(family, "vlan"), "members")]
    vlans = [v for v in (_resolve(m, ids) for m in members) if v is not None]
    vlans += [v for v in extra if v not in vlans]
    if not members and not extra:
        vlans = [DEFAULT_VLAN]
    mode = text_of(family, "interface-mode") or text_of(family, "port-mode") or "access"
    native = text_of(iface, "native-vlan-id") or text_of(family, "native-vlan-id")
    return PortState(
        name,
        vlans[0] if len(vlans) == 1 else None,
        enabled=enabled,
        vlans=tuple(vlans),
        mode=mode,
        native_vlan=_native(native, ids),
    )


def _native(text: str, ids: dict[str, int]) -> int | None:
    """A native VLAN by id or (without ELS) by name; one that names no VLAN we know
    reads as 0, so it is still seen as a native VLAN."""
    if not text:
        return None
    resolved = _resolve(text, ids)
    return 0 if resolved is None else resolved


def interfaces_with_native_vlan(config: etree._Element | None) -> set[str]:
    """The interfaces with an ELS interface-level `native-vlan-id` (active or not),
    read in one pass (a batch asks for each of its ports)."""
    interfaces = config.find("interfaces") if config is not None else None
    return {
        text_of(iface, "name")
        for iface in ([] if interfaces is None else interfaces.iterfind("interface"))
        if iface.find("native-vlan-id") is not None
    }


def disabled_levels(config: etree._Element | None) -> dict[str, frozenset[str]]:
    """interface -> where it has a `disable` statement (active or not): "interface",
    "unit" (unit 0), or both; interfaces without one are left out."""
    interfaces = config.find("interfaces") if config is not None else None
    found = {}
    for iface in [] if interfaces is None else interfaces.iterfind("interface"):
        unit = next((u for u in iface.iterfind("unit") if text_of(u, "name") == "0"), None)
        levels = {"interface"} if iface.find("disable") is not None else set()
        if unit is not None and unit.find("disable") is not None:
            levels.add("unit")
        if levels:
            found[text_of(iface, "name")] = frozenset(levels)
    return found


def _resolve(member: str, ids: dict[str, int]) -> int | None:
    """A `members` value as a VLAN id: a VLAN name, a number, or `default` (VLAN 1).

    Junos (ELS) names VLAN 1 `default` and leaves a port of `family
    ethernet-switching` without `members` in it (Juniper, "Understanding the Default
    VLAN on EX Series switches with ELS support"); `_port_state` reads that as VLAN 1.
    """
    if member in ids:
        return ids[member]
    if is_digits(member):
        return int(member)
    return DEFAULT_VLAN if member == "default" else None


def _vlan_interfaces(
    config: etree._Element | None, ids: dict[str, int]
) -> dict[str, tuple[int, ...]]:
    """Ports a VLAN lists itself (`vlans { v { interface ge-0/0/1.0; } }`), which both
    dialects accept."""
    found: dict[str, list[int]] = {}
    for vlan in children(child(config, "vlans"), "vlan"):
        vlan_id = ids.get(text_of(vlan, "name"))
        for iface in children(vlan, "interface"):
            port = text_of(iface, "name").removesuffix(".0")
            if vlan_id is not None:
                found.setdefault(port, []).append(vlan_id)
    return {port: tuple(v) for port, v in found.items()}


def governed_ports(config: etree._Element | None, ports: list[str]) -> dict[str, str]:
    """Ports whose switching configuration comes from a group or an interface-range.

    Read with `inherit="inherit" groups="groups" interface-ranges="interface-ranges"`,
    Junos tags inherited statements `junos:group="NAME"` / `junos:interface-range=
    "NAME"` (Junos XML API guide, "Display the Source Group for Inherited
    Configuration"). In the configuration as written, `interface-range` members,
    `apply-groups` on the interface, and groups applied to all interfaces whose
    (wildcard) names match tell the same. Port → where it is governed from.
    """
    found: dict[str, str] = {}
    interfaces = child(config, "interfaces")
    for iface in children(interfaces, "interface"):
        name = text_of(iface, "name")
        if name not in ports:
            continue
        for el in iface.iter():
            if el.get("interface-range"):
                found[name] = f"interface-range {el.get('interface-range')}"
            elif el.get("group"):
                found[name] = f"group {el.get('group')}"
        groups = [text_of(g, ".") for g in children(iface, "apply-groups")]
        if groups:
            found[name] = f"group {groups[0]}"
    for rng in children(interfaces, "interface-range"):
        for port in ports:
            if _in_range(port, rng):
                found[port] = f"interface-range {text_of(rng, 'name')}"
    for group in _applied_groups(config):
        for iface in children(child(group, "interfaces"), "interface"):
            for port in ports:
                if _name_matches(text_of(iface, "name"), port):
                    found[port] = f"group {text_of(group, 'name')}"
    return found


def _applied_groups(config: etree._Element | None) -> list[etree._Element]:
    """Groups applied at the top or to `interfaces` as a whole."""
    names = [text_of(a, ".") for a in children(config, "apply-groups")]
    names += [text_of(a, ".") for a in children(child(config, "interfaces"), "apply-groups")]
    groups = {text_of(g, "name"): g for g in children(child(config, "groups"), "groups")}
    groups |= {text_of(g, "name"): g for g in children(config, "groups")}
    return [groups[n] for n in names if n in groups]


def _name_matches(pattern: str, name: str) -> bool:
    """A group's interface name: literal, or a `<ge-*>` wildcard (Junos CLI User Guide,
    "Using Wildcards with Configuration Groups")."""
    if pattern.startswith("<") and pattern.endswith(">"):
        return fnmatch.fnmatchcase(name, pattern[1:-1])
    return pattern == name


def _in_range(port: str, rng: etree._Element) -> bool:
    if port in (text_of(m, "name") or text_of(m, ".") for m in children(rng, "member")):
        return True
    for span in children(rng, "member-range"):
        start, end = text_of(span, "name"), text_of(span, "end-range")
        if _same_pic(port, start) and _port_no(start) <= _port_no(port) <= _port_no(end):
            return True
    return False


def _same_pic(a: str, b: str) -> bool:
    return a.rsplit("/", 1)[0] == b.rsplit("/", 1)[0]


def _port_no(name: str) -> int:
    match = re.search(r"/(\d+)(?::\d+)?$", name)
    return int(match.group(1)) if match else -1


# ---------------------------------------------------------------------- operational


@dataclass(frozen=True)
class Software:
    """What `get-software-information` says, and the dialect the model speaks."""

    model: str
    version: str
    hostname: str

    @property
    def dialect(self) -> Dialect:
        return Dialect.of_model(self.model)


def software(root: etree._Element) -> Software | None:
    """Model, version and hostname (the first routing engine's on a Virtual Chassis)."""
    info = plain(root).find(".//software-information")
    if info is None:
        return None
    version = text_of(info, "junos-version") or _version_from_packages(info)
    return Software(text_of(info, "product-model"), version, text_of(info, "host-name"))


def _version_from_packages(info: etree._Element) -> str:
    """Older Junos reports the version only as `JUNOS … [version]` in package comments."""
    for comment in info.iterfind(".//package-information/comment"):
        match = re.search(r"\[([^\]]+)\]", comment.text or "")
        if match:
            return match.group(1)
    return ""


def physical_interfaces(root: etree._Element) -> set[str]:
    """Names of the physical interfaces in a `get-interface-information` reply."""
    return {
        name
        for el in plain(root).iterfind(".//physical-interface")
        if (name := text_of(el, "name"))
    }


def commit_succeeded(root: etree._Element) -> bool:
    """Whether a commit reply reports `<commit-success/>` (Junos XML protocol guide,
    "Commit the Candidate Configuration": success is `<routing-engine>` enclosing
    `<commit-success/>`; warnings may accompany it)."""
    return plain(root).find(".//commit-success") is not None
