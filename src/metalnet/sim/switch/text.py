"""Junos configuration text: the curly-brace format and `set`/`delete` lines.

Both parse into the XML tree of `tree.py`. Junos knows its full schema; the
simulator gets by with a few facts about it, enough for interfaces, VLANs,
groups and system statements:

- children of `interfaces` and `vlans` (at the top or inside a group) are entries
  named by their first word (`ge-0/0/1 { … }` is `<interface><name>ge-0/0/1</name>…`),
  except `interface-range NAME { … }`;
- `groups { G { … } }` makes one `<groups><name>G</name>…</groups>` per group, as
  Junos XML does;
- `family inet { … }` is `<family><inet>…` (the text joins the two levels);
- `unit 0`, `address 10.0.0.1/24`, `member ge-0/0/1`, `groups G` are entries keyed by
  the word after the keyword, and `member-range A to B` is
  `<member-range><name>A</name><end-range>B</end-range>`.

The `replace:`, `delete:`, `inactive:` and `protect:` tags become attributes, as in
Junos XML; set lines know `set`, `delete`, `activate` and `deactivate`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from metalnet.sim.switch.errors import syntax_error
from metalnet.sim.switch.tree import LEAF_LISTS, Element, entry_name, find_match, new_config

NAMED_LISTS = {"interfaces": "interface", "vlans": "vlan"}
FLATTENED = frozenset({"family"})
KEYED = frozenset({"unit", "address", "member", "groups", "interface-range"})
RANGE = "member-range"
TAGS = {
    "replace:": ("replace", "replace"),
    "delete:": ("delete", "delete"),
    "inactive:": ("inactive", "inactive"),
    "protect:": ("protect", "protect"),
}
INDENT = "    "

_TOKEN = re.compile(
    r'(?P<space>\s+)|(?P<comment>/\*.*?\*/|#[^\n]*)|"(?P<quoted>(?:[^"\\]|\\.)*)"'
    r"|(?P<punct>[{};\[\]])|(?P<word>[^\s{};\[\]\"]+)",
    re.S,
)
_STATEMENT = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_NEEDS_QUOTES = re.compile(r'[\s{};\[\]"#\\<>*]|^$')


@dataclass(frozen=True)
class Token:
    """A word (quoted or not) or one of `{ } ; [ ]`."""

    value: str
    punct: bool = False


def tokenize(text: str) -> list[Token]:
    """Split Junos text into tokens, dropping comments (`/* */`, `#`, `## Last commit`)."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise syntax_error(text[pos : pos + 20])
        pos = m.end()
        if m.group("quoted") is not None:
            tokens.append(Token(re.sub(r"\\(.)", r"\1", m.group("quoted"))))
        elif m.group("punct"):
            tokens.append(Token(m.group("punct"), punct=True))
        elif m.group("word"):
            tokens.append(Token(m.group("word")))
    return tokens


# --------------------------------------------------------------------------- text


def parse_text(text: str) -> Element:
    """Parse curly-brace configuration into a `<configuration>` tree."""
    root = new_config()
    tokens = tokenize(text)
    end = _parse_block(tokens, 0, root)
    if end != len(tokens):
        raise syntax_error(tokens[end].value)
    return root


def _parse_block(tokens: list[Token], pos: int, parent: Element) -> int:
    """Parse statements into `parent` until `}` or the end; return the position reached."""
    while pos < len(tokens) and tokens[pos] != Token("}", punct=True):
        pos = _parse_statement(tokens, pos, parent)
    return pos


def _parse_statement(tokens: list[Token], pos: int, parent: Element) -> int:
    tags = []
    while pos < len(tokens) and not tokens[pos].punct and tokens[pos].value in TAGS:
        tags.append(TAGS[tokens[pos].value])
        pos += 1
    words: list[str] = []
    while pos < len(tokens) and not tokens[pos].punct:
        words.append(tokens[pos].value)
        pos += 1
    if not words or pos == len(tokens):
        raise syntax_error(words[-1] if words else (tokens[pos].value if pos < len(tokens) else ""))
    end = tokens[pos].value
    if end == "{" and words == ["groups"] and parent.getparent() is None:
        pos, nodes = _parse_groups(tokens, pos + 1, parent)
    elif end == "{":
        node = _container(parent, words)
        pos = _close(tokens, _parse_block(tokens, pos + 1, node))
        nodes = [node]
    elif end == "[":
        values: list[str] = []
        pos += 1
        while pos < len(tokens) and not tokens[pos].punct:
            values.append(tokens[pos].value)
            pos += 1
        if len(words) != 1 or tokens[pos : pos + 2] != [Token("]", True), Token(";", True)]:
            raise syntax_error(words[0])
        pos += 2
        nodes = [_leaf(parent, words[0], v) for v in values]
    elif end == ";":
        nodes = [_terminal(parent, words)]
        pos += 1
    else:
        raise syntax_error(end)
    for node in nodes:
        for tag in tags:
            node.set(*tag)
    return pos


def _close(tokens: list[Token], pos: int) -> int:
    """Step over the `}` ending a block."""
    if pos == len(tokens):
        raise syntax_error("}", "syntax error, expecting '}'")
    return pos + 1


def _parse_groups(tokens: list[Token], pos: int, root: Element) -> tuple[int, list[Element]]:
    """`groups { G { … } … }`: each group becomes a `<groups>` entry of the root."""
    nodes = []
    while pos < len(tokens) and tokens[pos] != Token("}", punct=True):
        name = tokens[pos]
        if name.punct or pos + 1 == len(tokens) or tokens[pos + 1] != Token("{", punct=True):
            raise syntax_error(name.value)
        group = _child(root, "groups", name.value)
        pos = _close(tokens, _parse_block(tokens, pos + 2, group))
        nodes.append(group)
    return _close(tokens, pos), nodes


def _container(parent: Element, words: list[str]) -> Element:
    """The element a `words… {` statement opens (reusing one already parsed)."""
    if is_named_list(parent) and not (len(words) == 2 and words[0] in KEYED):
        if len(words) != 1:
            raise syntax_error(words[1])
        return _child(parent, NAMED_LISTS[parent.tag], words[0])
    if words[0] in FLATTENED and len(words) == 2:
        return _child(_child(parent, words[0]), words[1])
    if len(words) == 1:
        return _child(parent, words[0])
    if len(words) == 2:
        return _child(parent, words[0], words[1])
    raise syntax_error(words[2])


def _terminal(parent: Element, words: list[str]) -> Element:
    """The element of a `words…;` statement: flag, leaf value, or empty entry."""
    if is_named_list(parent) or (words[0] in FLATTENED and len(words) == 2):
        return _container(parent, words)
    if words[0] == RANGE:
        return _member_range(parent, words)
    if len(words) == 1:
        return _leaf(parent, words[0], None)
    if len(words) == 2 and words[0] in KEYED:
        return _child(parent, words[0], words[1])
    if len(words) == 2:
        return _leaf(parent, words[0], words[1])
    raise syntax_error(words[2])


def _member_range(parent: Element, words: list[str]) -> Element:
    """`member-range FIRST to LAST` of an interface range."""
    if len(words) != 4 or words[2] != "to":
        raise syntax_error(words[-1] if len(words) > 1 else RANGE)
    node = _child(parent, RANGE, words[1])
    _leaf(node, "end-range", words[3])
    return node


def _child(parent: Element, tag: str, name: str | None = None) -> Element:
    """Find or create the container/entry `tag` (named `name`) under `parent`."""
    probe = etree.Element(_statement(tag))
    if name is not None:
        etree.SubElement(probe, "name").text = name
    found = find_match(parent, probe)
    if found is not None:
        return found
    parent.append(probe)
    return probe


def _leaf(parent: Element, tag: str, value: str | None) -> Element:
    """Set leaf `tag` (a leaf-list gains a value; a plain leaf is overwritten)."""
    probe = etree.Element(_statement(tag))
    probe.text = value
    found = find_match(parent, probe)
    if found is not None and (tag not in LEAF_LISTS or found.text == value):
        found.text = value
        return found
    parent.append(probe)
    return probe


def _statement(word: str) -> str:
    """A statement keyword; anything else where a keyword belongs is a syntax error."""
    if _STATEMENT.fullmatch(word) is None:
        raise syntax_error(word)
    return word


def quote(word: str) -> str:
    """A word as Junos prints it: bare when safe, else double-quoted and escaped."""
    if _NEEDS_QUOTES.search(word):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def render_text(root: Element) -> str:
    """Render a `<configuration>` tree in the curly-brace format Junos shows."""
    return "".join(line + "\n" for line in _render_children(root, 0))


def is_named_list(node: Element) -> bool:
    """True for `interfaces`/`vlans` at the top or in a group: entries written by name alone."""
    parent = node.getparent()
    if node.tag not in NAMED_LISTS or parent is None:
        return False
    if parent.tag == "groups":
        parent = parent.getparent()
    return parent is not None and parent.getparent() is None


def _render_children(node: Element, depth: int) -> Iterator[str]:
    pad = INDENT * depth
    done: set[str] = set()
    for child in _body(node):
        if child.tag in LEAF_LISTS:
            if child.tag not in done:
                done.add(child.tag)
                values = [quote(c.text or "") for c in node if c.tag == child.tag]
                joined = values[0] if len(values) == 1 else "[ " + " ".join(values) + " ]"
                yield f"{pad}{child.tag} {joined};"
        elif child.tag == "groups" and node.getparent() is None:
            if child.tag not in done:
                done.add(child.tag)
                yield f"{pad}groups {{"
                for group in (c for c in node if c.tag == "groups"):
                    yield from _render_statement(
                        group, _header(group, [quote(entry_name(group) or "")]), depth + 1
                    )
                yield f"{pad}}}"
        elif child.tag in FLATTENED:
            for inner in child:
                yield from _render_statement(inner, _header(inner, [child.tag, inner.tag]), depth)
        else:
            yield from _render_statement(child, _header(child, _words(node, child)), depth)


def _header(node: Element, words: list[str]) -> str:
    """A statement's first words, with the `inactive:` tag of a deactivated one."""
    return ("inactive: " if node.get("inactive") == "inactive" else "") + " ".join(words)


def _body(node: Element) -> list[Element]:
    """Children other than the entry's own `<name>` key (and a member range's end)."""
    keyed = entry_name(node) is not None
    hidden = ("name", "end-range") if node.tag == RANGE else ("name",)
    return [c for c in node if not (keyed and c.tag in hidden)]


def _words(parent: Element, child: Element) -> list[str]:
    """How a statement starts: `tag`, `tag name`, or just `name` in a named list."""
    name = entry_name(child)
    if name is None:
        return [child.tag]
    if child.tag == RANGE:
        return [RANGE, quote(name), "to", quote(child.findtext("end-range") or "")]
    if is_named_list(parent) and child.tag == NAMED_LISTS[parent.tag]:
        return [quote(name)]
    return [child.tag, quote(name)]


def _render_statement(node: Element, header: str, depth: int) -> Iterator[str]:
    pad = INDENT * depth
    if _body(node):
        yield f"{pad}{header} {{"
        yield from _render_children(node, depth + 1)
        yield f"{pad}}}"
    elif node.text is not None and entry_name(node) is None:
        yield f"{pad}{header} {quote(node.text)};"
    else:
        yield f"{pad}{header};"


# --------------------------------------------------------------------------- set lines


VERBS = ("set", "delete", "activate", "deactivate")


def parse_set(text: str) -> list[Element]:
    """Parse `set`/`delete`/`activate`/`deactivate` lines into `<configuration>` fragments.

    A `delete` line marks its last element `delete="delete"` (a bare `delete` marks
    the whole configuration); `deactivate`/`activate` mark it `inactive="inactive"`
    / `active="active"` and the fragment `activation="activation"`, to be applied
    without creating anything.
    """
    fragments = []
    for line in text.splitlines():
        tokens = tokenize(line)
        if not tokens:
            continue
        verb = tokens[0].value
        if tokens[0].punct or verb not in VERBS:
            raise syntax_error(verb)
        fragments.append(_set_fragment(verb, tokens[1:]))
    return fragments


def _set_fragment(verb: str, tokens: list[Token]) -> Element:
    root = new_config()
    words, values = _split_list(tokens)
    if not words:
        if verb != "delete":
            raise syntax_error(verb, "syntax error, expecting <statement>")
        root.set("delete", "delete")
        return root
    node = root
    i = 0
    while i < len(words):
        word, left = words[i], len(words) - i
        if is_named_list(node) and not (word in KEYED and left >= 2):
            node, i = _child(node, NAMED_LISTS[node.tag], word), i + 1
        elif word in NAMED_LISTS and _at_top(node):
            node, i = _child(node, word), i + 1
        elif word == RANGE and left == 4 and values is None:
            node, i = _member_range(node, words[i:]), i + 4
        elif word in FLATTENED and left >= 2:
            node, i = _child(_child(node, word), words[i + 1]), i + 2
        elif word in KEYED and left >= 2:
            node, i = _child(node, word, words[i + 1]), i + 2
        elif left == 2 and values is None:
            node, i = _leaf(node, word, words[i + 1]), i + 2
        elif left == 1 and values is not None:
            leaves = [_leaf(node, word, v) for v in values]
            node, i = leaves[-1] if leaves else _leaf(node, word, None), i + 1
        elif left == 1:
            node, i = _leaf(node, word, None), i + 1
        else:
            node, i = _child(node, word), i + 1
    mark = {"delete": ("delete", "delete"), "deactivate": ("inactive", "inactive")}
    mark["activate"] = ("active", "active")
    if verb in mark:
        for target in _marked(node, values):
            target.set(*mark[verb])
    if verb in ("activate", "deactivate"):
        root.set("activation", "activation")
    return root


def _at_top(node: Element) -> bool:
    """`node` is the configuration root or a group, where `interfaces`/`vlans` live."""
    parent = node.getparent()
    return parent is None or (node.tag == "groups" and parent.getparent() is None)


def _marked(last: Element, values: list[str] | None) -> list[Element]:
    parent = last.getparent()
    if values and parent is not None:
        return [c for c in parent if c.tag == last.tag and c.text in values]
    return [last]


def _split_list(tokens: list[Token]) -> tuple[list[str], list[str] | None]:
    """Words before an optional trailing `[ a b ]`, and the bracketed values."""
    if any(t.punct for t in tokens):
        if Token("[", True) not in tokens or tokens[-1] != Token("]", True):
            raise syntax_error(next(t.value for t in tokens if t.punct))
        at = tokens.index(Token("[", True))
        inner = tokens[at + 1 : -1]
        if any(t.punct for t in tokens[:at] + inner):
            raise syntax_error("[")
        return [t.value for t in tokens[:at]], [t.value for t in inner]
    return [t.value for t in tokens], None


def render_set(root: Element) -> str:
    """Render a tree as the lines `show configuration | display set` prints:
    `set` lines, then a `deactivate` line for each deactivated statement."""
    lines = list(_set_lines(root, []))
    sets = [f"set {path}\n" for verb, path in lines if verb == "set"]
    return "".join(sets + [f"deactivate {path}\n" for verb, path in lines if verb != "set"])


def _set_lines(node: Element, path: list[str]) -> Iterator[tuple[str, str]]:
    for child in _body(node):
        if child.tag in FLATTENED:
            for inner in child:
                yield from _set_node(inner, [*path, child.tag, inner.tag])
        else:
            yield from _set_node(child, [*path, *_words(node, child)])


def _set_node(node: Element, path: list[str]) -> Iterator[tuple[str, str]]:
    if _body(node):
        yield from _set_lines(node, path)
    elif node.text is not None and entry_name(node) is None:
        yield "set", " ".join([*path, quote(node.text)])
    else:
        yield "set", " ".join(path)
    if node.get("inactive") == "inactive":
        value = [quote(node.text)] if node.tag in LEAF_LISTS and node.text else []
        yield "deactivate", " ".join([*path, *value])
