"""What a configuration means: groups, interface ranges and deactivated statements resolved.

Junos keeps `groups`, `apply-groups`, `interface-range` and `inactive:` statements
in the configuration and resolves them when it commits; `get-configuration
inherit="inherit"` (`show configuration | display inheritance`) shows the result.
The rules modelled here:

- a deactivated statement has no effect: it and everything below it are ignored
  ("Junos OS CLI User Guide: Deactivate and Reactivate Statements");
- `apply-groups` at any level inherits the group's statements at the same
  hierarchy; a group entry named with a wildcard (`<*>`, `<ge-*>`) applies to every
  existing entry it matches and creates none; statements configured locally win
  over inherited ones, and groups listed first win over later ones ("Junos OS CLI
  User Guide: Configuration Groups", "Using Wildcards with Configuration Groups");
- an `interface-range` gives its statements to every `member` (a name, or a
  pattern such as `ge-0/0/[0-5]` or `ge-0/0/*`) and to every interface of each
  `member-range A to B`; an interface's own statements win ("Interface Ranges",
  Junos OS Interfaces Fundamentals User Guide).

Every inherited statement is marked with where it came from (`GROUP`,
`INTERFACE_RANGE`), which `get-configuration` shows as the `junos:group` and
`junos:interface-range` attributes when asked with `groups="groups"` /
`interface-ranges="interface-ranges"` (Junos XML Management Protocol Developer
Guide, "junos:group", "junos:interface-range").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from lxml import etree

from metalnet.sim.switch.tree import LEAF_LISTS, Element, copy, entry_name, find_match, insert

GROUP = "junos-group"
INTERFACE_RANGE = "junos-interface-range"
Origin = tuple[str, str]
_RANGE = re.compile(r"\[(\d+)-(\d+)\]")
_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")


def effective(config: Element, ports: Iterable[str]) -> Element:
    """The configuration as the switch runs it: active statements, groups and ranges applied."""
    return inherited(without_inactive(config), ports)


def inherited(config: Element, ports: Iterable[str]) -> Element:
    """`display inheritance`: groups and interface ranges applied to a copy of `config`."""
    out = copy(config)
    _apply_groups(out)  # groups may define interface ranges …
    _apply_ranges(out, ports)
    _apply_groups(out)  # … and wildcard groups apply to the interfaces ranges create
    return out


def without_inactive(config: Element) -> Element:
    """A copy of `config` without deactivated statements."""
    out = copy(config)
    for node in [n for n in out.iter() if n.get("inactive") == "inactive"]:
        parent = node.getparent()
        if parent is not None:
            parent.remove(node)
    return out


# --------------------------------------------------------------------------- groups


def _apply_groups(config: Element) -> None:
    groups = {g.findtext("name"): g for g in config.iterfind("groups")}
    appliers = config.xpath("descendant-or-self::*[apply-groups]")  # in document order
    for node in appliers:
        if _inside_group(node):
            continue
        path = _path(node)
        for applied in [a.text for a in node.iterfind("apply-groups")]:
            group = groups.get(applied)
            for source in _walk(group, path) if group is not None else ():
                _inherit(node, source, (GROUP, applied or ""))


def _inside_group(node: Element) -> bool:
    return any(a.tag == "groups" and a.getparent() is None for a in _ancestors(node))


def _ancestors(node: Element) -> Iterator[Element]:
    parent = node.getparent()
    while parent is not None:
        yield parent
        parent = parent.getparent()


def _path(node: Element) -> list[tuple[str, str | None]]:
    """Tags and entry names from the root down to `node`."""
    chain = [node, *_ancestors(node)][:-1]
    return [(n.tag, entry_name(n)) for n in reversed(chain)]


def _walk(group: Element, path: list[tuple[str, str | None]]) -> list[Element]:
    """The statements of `group` at the hierarchy `path` (wildcard entries included)."""
    level = [group]
    for tag, name in path:
        level = [
            c
            for node in level
            for c in node
            if c.tag == tag and (name is None or _name_matches(entry_name(c), name))
        ]
    return level


def _is_wildcard(name: str | None) -> bool:
    return name is not None and name.startswith("<") and name.endswith(">")


def _name_matches(pattern: str | None, name: str) -> bool:
    if _is_wildcard(pattern):
        return pattern_matches((pattern or "")[1:-1], name)
    return pattern == name


def pattern_matches(pattern: str, name: str) -> bool:
    """Junos name patterns: `*` any text, `[a-b]` a number from a to b."""
    regex = ""
    pos = 0
    for m in _RANGE.finditer(pattern):
        regex += _glob(pattern[pos : m.start()])
        low, high = int(m.group(1)), int(m.group(2))
        regex += "(?:" + "|".join(str(n) for n in range(low, high + 1)) + ")"
        pos = m.end()
    regex += _glob(pattern[pos:])
    return re.fullmatch(regex, name) is not None


def _glob(text: str) -> str:
    return ".*".join(re.escape(part) for part in text.split("*"))


def _inherit(target: Element, source: Element, origin: Origin) -> None:
    """Give `target` the statements of `source` that it does not configure itself,
    each marked with its `origin`."""
    own_lists = {c.tag for c in target if c.tag in LEAF_LISTS}
    for child in source:
        if child.tag in ("name", "apply-groups"):
            continue
        name = entry_name(child)
        if _is_wildcard(name):
            for existing in [t for t in target if t.tag == child.tag]:
                if _name_matches(name, entry_name(existing) or ""):
                    _inherit(existing, child, origin)
        elif child.tag in LEAF_LISTS:
            if child.tag not in own_lists:
                insert(target, _marked(copy(child), origin))
        else:
            match = find_match(target, child)
            if match is None:
                insert(target, _marked(_concrete(child), origin))
            elif len(child):
                _inherit(match, child, origin)


def _marked(node: Element, origin: Origin) -> Element:
    for element in node.iter():
        element.set(*origin)
    return node


def _concrete(node: Element) -> Element:
    """A copy of `node` without wildcard entries (they create nothing)."""
    out = copy(node)
    for wild in [n for n in out.iter() if _is_wildcard(entry_name(n))]:
        parent = wild.getparent()
        if parent is not None:
            parent.remove(wild)
    return out


# --------------------------------------------------------------------------- interface ranges


def _apply_ranges(config: Element, ports: Iterable[str]) -> None:
    interfaces = config.find("interfaces")
    if interfaces is None:
        return
    named = {i.findtext("name") or "": i for i in interfaces.iterfind("interface")}
    known = list(dict.fromkeys([*ports, *named]))
    for rng in list(interfaces.iterfind("interface-range")):
        body = copy(rng)
        for key in [c for c in body if c.tag in ("name", "member", "member-range")]:
            body.remove(key)
        for member in range_members(rng, known):
            if member not in named:
                named[member] = etree.Element("interface")
                etree.SubElement(named[member], "name").text = member
                insert(interfaces, named[member])
            _inherit(named[member], body, (INTERFACE_RANGE, rng.findtext("name") or ""))


def range_members(rng: Element, known: list[str]) -> list[str]:
    """The interfaces an `interface-range` covers."""
    out: list[str] = []
    for member in rng.iterfind("member"):
        pattern = member.findtext("name") or ""
        if "*" in pattern or _RANGE.search(pattern):
            out += [k for k in known if pattern_matches(pattern, k)]
        else:
            out.append(pattern)
    for span in rng.iterfind("member-range"):
        out += _span(span.findtext("name") or "", span.findtext("end-range") or "")
    return list(dict.fromkeys(out))


def _span(first: str, last: str) -> list[str]:
    a, b = _TRAILING_NUMBER.match(first), _TRAILING_NUMBER.match(last)
    if a is None or b is None or a.group(1) != b.group(1):
        return [first, last]
    return [f"{a.group(1)}{n}" for n in range(int(a.group(2)), int(b.group(2)) + 1)]
