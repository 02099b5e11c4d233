"""The configuration tree: Junos XML elements without namespaces, and edits on it.

The simulator keeps configuration the way Junos exposes it in XML (`<configuration>`
with `<interfaces><interface><name>…`), so XML loads, subtree filters and replies
need no conversion; the text and set formats are parsed into the same elements.

Entries of a list are told apart by their `<name>` child; leaves in `LEAF_LISTS`
hold several values (`members`), which is why a Junos *merge* of a VLAN member adds
to the old membership instead of replacing it.

A deactivated statement carries `inactive="inactive"`, as in Junos XML; a load
with `inactive="inactive"` deactivates and one with `active="active"` activates
("Change a Configuration Element's Activation State Using the Junos XML Protocol",
juniper.net/documentation/us/en/software/junos/junos-xml-protocol).
"""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

from metalnet.sim.switch.errors import ErrorSpec, RpcFailure

LEAF_LISTS = frozenset({"members", "apply-groups"})
OPERATIONS = frozenset({"merge", "replace", "create", "delete", "remove", "none"})
_OP_ATTRS = ("operation", "delete", "replace")

Element = etree._Element


def new_config() -> Element:
    """An empty `<configuration>` root."""
    return etree.Element("configuration")


def localname(tag: object) -> str:
    """Tag or attribute name without its namespace."""
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def clean(element: Element) -> Element:
    """Copy `element` without namespaces, comments or layout whitespace.

    Clients qualify their payload differently (ncclient puts the configuration in
    the base namespace, PyEZ in none); stripping here lets everything else compare
    plain tags.
    """
    out = etree.Element(localname(element.tag))
    for key, value in element.attrib.items():
        out.set(localname(key), value)
    children = [c for c in element if isinstance(c.tag, str)]
    if children:
        out.extend(clean(c) for c in children)
    elif element.text and element.text.strip():
        out.text = element.text.strip()
    return out


def is_leaf(element: Element) -> bool:
    """A leaf has no element children (a value like `vlan-id`, or a flag like `disable`)."""
    return len(element) == 0


def entry_name(element: Element) -> str | None:
    """The key of a list entry (`<name>` child), or None for containers and leaves."""
    name = element.find("name")
    return (name.text or "") if name is not None and not is_leaf(element) else None


def identity(element: Element) -> tuple[str, str | None]:
    """What makes two siblings the same statement."""
    if element.tag in LEAF_LISTS:
        return (element.tag, element.text or "")
    return (element.tag, entry_name(element))


def find_match(parent: Element, element: Element) -> Element | None:
    """The child of `parent` that is the same statement as `element`.

    A list entry is looked up by its name in one XPath query: a scan in Python of a
    list's siblings made every load of n ports cost n x (ports on the switch) steps.
    """
    wanted = identity(element)
    tag, key = wanted
    if key is not None and tag not in LEAF_LISTS:
        candidates = _ENTRY(parent, tag=tag, key=key)
    else:
        candidates = parent.iterchildren(tag)
    return next((child for child in candidates if identity(child) == wanted), None)


_ENTRY = etree.XPath("*[local-name() = $tag and name = $key]")


def is_inactive(element: Element) -> bool:
    """The statement is deactivated (kept in the configuration, without effect)."""
    return element.get("inactive") == "inactive"


def _set_activation(target: Element, source: Element) -> None:
    if is_inactive(source):
        target.set("inactive", "inactive")
    elif source.get("active") == "active":
        target.attrib.pop("inactive", None)


def plain_copy(element: Element) -> Element:
    """Deep copy without edit attributes, leaving out children marked for deletion."""
    out = etree.Element(element.tag)
    out.text = element.text
    if is_inactive(element):
        out.set("inactive", "inactive")
    for child in element:
        if _explicit_op(child, honour_replace=True) not in ("delete", "remove"):
            out.append(plain_copy(child))
    return out


def insert(parent: Element, element: Element) -> None:
    """Append `element`, next to its last same-tag sibling so lists stay together."""
    same = [c for c in parent if c.tag == element.tag]
    if same:
        same[-1].addnext(element)
    else:
        parent.append(element)


def _explicit_op(element: Element, *, honour_replace: bool) -> str | None:
    if element.get("delete") == "delete":
        return "delete"
    if honour_replace and element.get("replace") == "replace":
        return "replace"
    op = element.get("operation")
    if op is not None and op not in OPERATIONS:
        raise RpcFailure(ErrorSpec(f"invalid operation '{op}'", bad_element=element.tag))
    return op


def edit(
    target: Element,
    source: Element,
    *,
    default_op: str = "merge",
    honour_replace: bool = True,
    strict: bool = False,
) -> list[str]:
    """Apply the children of `source` to the children of `target` in place.

    Returns the statements a delete named but the target did not hold: a Junos
    load answers each with the warning "statement not found" (as in the replies
    of PyEZ's tests/unit/test_exception.py), which ncclient raises by default.

    `default_op` is the NETCONF default-operation (merge or none); explicit
    `operation=`, `delete="delete"` and, when `honour_replace` (Junos load
    action replace), `replace="replace"` attributes override it per element.
    `strict` raises the RFC 6241 data-exists/data-missing errors (edit-config);
    Junos loads ignore a delete of something absent.
    """
    missing: list[str] = []
    for child in source:
        op = _explicit_op(child, honour_replace=honour_replace) or default_op
        missing += _edit_one(target, child, op, honour_replace=honour_replace, strict=strict)
    return missing


def _edit_one(
    parent: Element, src: Element, op: str, *, honour_replace: bool, strict: bool
) -> list[str]:
    match = find_match(parent, src)
    if op in ("delete", "remove"):
        if match is not None:
            parent.remove(match)
        elif op == "delete" and strict:
            raise RpcFailure(
                ErrorSpec("statement not found", tag="data-missing", bad_element=src.tag)
            )
        elif op == "delete":
            return [src.tag]
        return []
    if op == "create" and match is not None:
        raise RpcFailure(
            ErrorSpec("statement already exists", tag="data-exists", bad_element=src.tag)
        )
    if op in ("replace", "create"):
        fresh = plain_copy(src)
        if match is not None:
            parent.replace(match, fresh)
        else:
            insert(parent, fresh)
        return []
    missing: list[str] = []
    if is_leaf(src):
        _merge_leaf(parent, src, match, op)
    elif match is None:
        fresh = etree.Element(src.tag)
        if entry_name(src) is not None:
            etree.SubElement(fresh, "name").text = entry_name(src)
        _set_activation(fresh, src)
        missing = edit(fresh, src, default_op=op, honour_replace=honour_replace, strict=strict)
        if op == "merge" or len(fresh) > (1 if entry_name(src) is not None else 0):
            insert(parent, fresh)
        return missing
    else:
        missing = edit(match, src, default_op=op, honour_replace=honour_replace, strict=strict)
    if match is not None:
        _set_activation(match, src)
    return missing


def _merge_leaf(parent: Element, src: Element, match: Element | None, op: str) -> None:
    if op == "none":
        return
    if match is None:
        insert(parent, plain_copy(src))
    elif src.text is not None:
        match.text = src.text


def subtree_filter(data: Element, flt: Element) -> Element | None:
    """RFC 6241 subtree filtering of `data` (a node) by `flt` (its filter node).

    Returns a filtered copy of `data`, or None when nothing below it is selected
    or a content-match node (a leaf with a value, like `<name>ge-0/0/1</name>`)
    does not match.
    """
    criteria = [c for c in flt if isinstance(c.tag, str)]
    content = [c for c in criteria if is_leaf(c) and c.text and c.text.strip()]
    if not all(_has_value(data, c) for c in content):
        return None
    others = [c for c in criteria if c not in content]
    if not others:
        return copy(data)
    picked: list[Element] = []
    for child in data:
        for wanted in others:
            if child.tag != localname(wanted.tag):
                continue
            chosen = copy(child) if is_leaf(wanted) else subtree_filter(child, wanted)
            if chosen is not None:
                picked.append(chosen)
    if not picked:
        return None
    out = etree.Element(data.tag)
    out.extend(copy(d) for d in data if any(_is_value(d, c) for c in content))
    out.extend(picked)
    return out


def _is_value(data: Element, wanted: Element) -> bool:
    return data.tag == localname(wanted.tag) and data.text == (wanted.text or "").strip()


def _has_value(parent: Element, wanted: Element) -> bool:
    return any(_is_value(d, wanted) for d in parent)


def walk_entries(root: Element, *path: str) -> Iterator[Element]:
    """Elements found by following `path` tags from `root` (every branch)."""
    level = [root]
    for tag in path:
        level = [child for node in level for child in node if child.tag == tag]
    yield from level


def same(a: Element, b: Element) -> bool:
    """Two clean trees hold the same configuration."""
    return etree.tostring(a) == etree.tostring(b)


def copy(element: Element) -> Element:
    """An independent deep copy."""
    return etree.fromstring(etree.tostring(element))
