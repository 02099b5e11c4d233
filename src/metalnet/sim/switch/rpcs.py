"""The RPCs a simulated Junos switch answers, one small function each.

A handler gets the session's context and the operation element (namespaces
already stripped) and returns the reply payload (`None` means `<ok/>`), or raises
`RpcFailure`. The transport (framing, SSH) lives in `server.py`.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from metalnet.sim.switch import inherit, text, tree
from metalnet.sim.switch.datastore import CommitOutcome, ConfigDatabase, SessionInfo
from metalnet.sim.switch.errors import CHECKOUT_FAILED, ErrorSpec, RpcFailure, syntax_error
from metalnet.sim.switch.faults import Faults
from metalnet.sim.switch.tree import Element
from metalnet.validate import is_digits

DEFAULT_CONFIRM_MINUTES = 10
JUNOS_NS = "http://xml.juniper.net/junos/{release}/junos"
INTERFACE_NS = "http://xml.juniper.net/junos/{release}/junos-interface"
BUILTIN_INTERFACES = ("me0", "vme", "lo0")
PRIVATE_WARNING_UNTIL = (18, 2)


@dataclass(frozen=True)
class DeviceInfo:
    """What `show version` reports."""

    name: str
    model: str = "ex4300-48t"
    version: str = "21.4R3-S5.4"
    serial: str = "SIM0000000000"


@dataclass
class RpcContext:
    """Everything a handler may touch: its session, the switch's state, and the transport."""

    session: SessionInfo
    db: ConfigDatabase
    faults: Faults
    device: DeviceInfo
    end_session: Callable[[], None]
    kill_session: Callable[[int], bool]


Payload = list[Element | ErrorSpec] | None
Handler = Callable[[RpcContext, Element], Awaitable[Payload]]
HANDLERS: dict[str, Handler] = {}


def rpc(name: str) -> Callable[[Handler], Handler]:
    """Register a handler for the RPC `name`."""

    def register(handler: Handler) -> Handler:
        HANDLERS[name] = handler
        return handler

    return register


async def dispatch(ctx: RpcContext, op: Element) -> Payload:
    """Run the handler for `op`, or fail as Junos does for an RPC it does not know."""
    handler = HANDLERS.get(op.tag)
    if handler is None:
        raise syntax_error(op.tag)
    return await handler(ctx, op)


def _element(tag: str, value: str | None = None) -> Element:
    el = etree.Element(tag)
    el.text = value
    return el


# --------------------------------------------------------------------------- locks


@rpc("lock-configuration")
async def lock_configuration(ctx: RpcContext, op: Element) -> Payload:
    ctx.db.lock(ctx.session)
    return None


@rpc("unlock-configuration")
async def unlock_configuration(ctx: RpcContext, op: Element) -> Payload:
    ctx.db.unlock(ctx.session)
    return None


def _datastore(op: Element, field: str, allowed: tuple[str, ...]) -> str:
    """The datastore named in `<target>`/`<source>`, refusing those Junos does not offer."""
    holder = op.find(field)
    name = holder[0].tag if holder is not None and len(holder) else ""
    if name not in allowed:
        raise RpcFailure(
            ErrorSpec(f"{field} {name or '(missing)'} is not supported", tag="invalid-value")
        )
    return name


@rpc("lock")
async def lock(ctx: RpcContext, op: Element) -> Payload:
    _datastore(op, "target", ("candidate",))
    ctx.db.lock(ctx.session)
    return None


@rpc("unlock")
async def unlock(ctx: RpcContext, op: Element) -> Payload:
    _datastore(op, "target", ("candidate",))
    ctx.db.unlock(ctx.session)
    return None


# --------------------------------------------------------------------------- reading


def _filtered(config: Element, flt: Element | None) -> Element:
    if flt is None or len(flt) == 0:
        return config
    picked = tree.subtree_filter(config, flt)
    return picked if picked is not None else tree.new_config()


@rpc("get-configuration")
async def get_configuration(ctx: RpcContext, op: Element) -> Payload:
    database = op.get("database", "candidate")
    if database not in ("candidate", "committed"):
        raise RpcFailure(ErrorSpec(f"invalid database {database}", bad_element=database))
    source = ctx.db.committed if database == "committed" else ctx.db.candidate_of(ctx.session)
    if op.get("compare") == "rollback":
        return [_compare(ctx.db, source, _int(op.get("rollback") or "0"))]
    if op.get("inherit") in ("inherit", "defaults"):
        source = inherit.inherited(source, ctx.db.ports)
    config = _show_origins(
        _filtered(source, op.find("configuration")),
        JUNOS_NS.format(release=junos_release(ctx.device.version)),
        groups=op.get("groups") == "groups",
        ranges=op.get("interface-ranges") == "interface-ranges",
    )
    fmt = op.get("format", "xml")
    if fmt == "xml":
        return [tree.copy(config)]
    if fmt == "text":
        return [_element("configuration-text", _last_commit(ctx.db) + text.render_text(config))]
    if fmt == "set":
        return [_element("configuration-set", text.render_set(config))]
    raise RpcFailure(ErrorSpec(f"invalid format {fmt}", bad_element=fmt))


def _show_origins(config: Element, junos: str, *, groups: bool, ranges: bool) -> Element:
    """A copy of `config` whose inherited statements carry `junos:group` /
    `junos:interface-range` when asked for, and no origin mark otherwise."""
    out = etree.Element(config.tag, nsmap={"junos": junos})
    out.extend(tree.copy(child) for child in config)
    shown = {inherit.GROUP: groups, inherit.INTERFACE_RANGE: ranges}
    for element in out.iter():
        for mark, show in shown.items():
            origin = element.attrib.pop(mark, None)
            if origin is not None and show:
                element.set(f"{{{junos}}}{mark.removeprefix('junos-')}", origin)
    return out


def _compare(db: ConfigDatabase, config: Element, index: int) -> Element:
    """`show | compare rollback N`, as +/- lines of the text format (Junos adds
    `[edit …]` headers; PyEZ's `diff()` only needs the text, "\n" when equal).

    Identical trees render identically, so they are not rendered (a client checking
    that the candidate holds nothing uncommitted asks this before every transaction)."""
    rollback = db.rollback_config(index)
    lines: list[str] = []
    if etree.tostring(rollback) != etree.tostring(config):
        old = text.render_text(rollback).splitlines()
        new = text.render_text(config).splitlines()
        lines = [
            line
            for line in difflib.unified_diff(old, new, lineterm="", n=0)
            if line[:1] in "+-" and line[:3] not in ("+++", "---")
        ]
    information = _element("configuration-information")
    information.append(_element("configuration-output", "\n".join(lines) + "\n"))
    return information


def _last_commit(db: ConfigDatabase) -> str:
    last = db.history[0]
    at = datetime.fromtimestamp(last.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"## Last commit: {at} by {last.user}\n"


@rpc("get-config")
async def get_config(ctx: RpcContext, op: Element) -> Payload:
    source = _datastore(op, "source", ("running", "candidate"))
    config = ctx.db.committed if source == "running" else ctx.db.candidate_of(ctx.session)
    flt = op.find("filter")
    data = _element("data")
    data.append(
        tree.copy(_filtered(config, flt.find("configuration") if flt is not None else None))
    )
    return [data]


@rpc("get-software-information")
async def get_software_information(ctx: RpcContext, op: Element) -> Payload:
    return [_software_information(ctx)]


def _software_information(ctx: RpcContext) -> Element:
    info = _element("software-information")
    host = ctx.db.committed.findtext("system/host-name") or ctx.device.name
    for tag, value in (
        ("host-name", host),
        ("product-model", ctx.device.model),
        ("product-name", ctx.device.model),
        ("junos-version", ctx.device.version),
    ):
        info.append(_element(tag, value))
    package = etree.SubElement(info, "package-information")
    package.append(_element("name", "junos"))
    package.append(_element("comment", f"JUNOS Software Release [{ctx.device.version}]"))
    return info


@rpc("get-chassis-inventory")
async def get_chassis_inventory(ctx: RpcContext, op: Element) -> Payload:
    inventory = _element("chassis-inventory")
    chassis = etree.SubElement(inventory, "chassis")
    chassis.append(_element("name", "Chassis"))
    chassis.append(_element("serial-number", ctx.device.serial))
    chassis.append(_element("description", ctx.device.model.upper()))
    return [inventory]


@rpc("get-interface-information")
async def get_interface_information(ctx: RpcContext, op: Element) -> Payload:
    """Which physical interfaces exist, with their state, as `show interfaces terse`.

    The shape follows real replies (an `interface-information` in the
    junos-interface namespace, `physical-interface` entries with `logical-interface`
    children, values framed by newlines as Junos prints them) — see
    tests/data/junos/get-interface-information-terse.xml. An unknown name answers
    "device … not found" like Junos.
    """
    wanted = (op.findtext("interface-name") or "").strip()
    names = [*ctx.db.ports, *BUILTIN_INTERFACES]
    if wanted:
        names = [n for n in names if inherit.pattern_matches(wanted, n)]
        if not names:
            raise RpcFailure(ErrorSpec(f"device {wanted} not found", bad_element=wanted))
    config = ctx.db.effective(ctx.db.committed)
    release = junos_release(ctx.device.version)
    junos = JUNOS_NS.format(release=release)
    info = etree.Element(
        "interface-information",
        nsmap={None: INTERFACE_NS.format(release=release), "junos": junos},
    )
    info.set(f"{{{junos}}}style", "terse" if op.find("terse") is not None else "normal")
    for name in names:
        info.append(_physical_interface(name, config))
    return [info]


def _physical_interface(name: str, config: Element) -> Element:
    iface = next(
        (
            i
            for i in tree.walk_entries(config, "interfaces", "interface")
            if i.findtext("name") == name
        ),
        None,
    )
    up = "down" if iface is not None and iface.find("disable") is not None else "up"
    physical = etree.Element("physical-interface")
    for tag, value in (("name", name), ("admin-status", up), ("oper-status", up)):
        physical.append(_element(tag, f"\n{value}\n"))
    for unit in iface.iterfind("unit") if iface is not None else ():
        logical = etree.SubElement(physical, "logical-interface")
        logical.append(_element("name", f"\n{name}.{unit.findtext('name')}\n"))
        logical.append(_element("admin-status", f"\n{up}\n"))
        logical.append(_element("oper-status", f"\n{up}\n"))
        for family in unit.iterfind("family/*"):
            af = etree.SubElement(logical, "address-family")
            short = "eth-switch" if family.tag == "ethernet-switching" else family.tag
            af.append(_element("address-family-name", f"\n{short}\n"))
    return physical


@rpc("command")
async def command(ctx: RpcContext, op: Element) -> Payload:
    words = (op.text or "").split()
    if words != ["show", "version"]:
        raise syntax_error(" ".join(words) or "command")
    return [_software_information(ctx)]


# --------------------------------------------------------------------------- candidate


@rpc("load-configuration")
async def load_configuration(ctx: RpcContext, op: Element) -> Payload:
    action = op.get("action", "merge")
    missing: list[str] = []
    if op.get("rollback") is not None:
        config = ctx.db.rollback_config(_int(op.get("rollback") or ""))
        ctx.db.edit(ctx.session, lambda _: tree.copy(config))
    elif action == "set" or op.find("configuration-set") is not None:
        fragments = text.parse_set(op.findtext("configuration-set") or "")
        for fragment in fragments:
            ctx.db.dialect.check_statements(fragment)
        ctx.db.edit(ctx.session, lambda c: _apply_set(c, fragments, missing))
    else:
        incoming = _incoming(op, op.get("format", "xml"))
        ctx.db.dialect.check_statements(incoming)
        ctx.db.edit(ctx.session, lambda c: _apply_load(c, incoming, action, missing))
    results = _element("load-configuration-results")
    results.extend(ErrorSpec("statement not found", severity="warning").element() for _ in missing)
    results.append(_element("ok"))
    return [results]


def _incoming(op: Element, fmt: str) -> Element:
    if fmt == "text":
        return text.parse_text(op.findtext("configuration-text") or "")
    if fmt == "xml":
        config = op.find("configuration")
        if config is None:
            raise syntax_error("load-configuration", "missing <configuration>")
        return config
    raise RpcFailure(ErrorSpec(f"format {fmt} is not supported", bad_element=fmt))


def _apply_load(
    candidate: Element, incoming: Element, action: str, missing: list[str]
) -> Element | None:
    if action in ("override", "update"):
        return tree.plain_copy(incoming)
    if action not in ("merge", "replace"):
        raise RpcFailure(ErrorSpec(f"invalid action {action}", bad_element=action))
    missing[:] = tree.edit(candidate, incoming, honour_replace=action == "replace")
    return None


def _apply_set(candidate: Element, fragments: list[Element], missing: list[str]) -> Element:
    missing.clear()
    for fragment in fragments:
        if fragment.get("delete") == "delete":
            candidate = tree.new_config()
        else:
            only_activation = fragment.get("activation") == "activation"
            default = "none" if only_activation else "merge"
            missing += tree.edit(candidate, fragment, default_op=default, honour_replace=False)
    return candidate


@rpc("edit-config")
async def edit_config(ctx: RpcContext, op: Element) -> Payload:
    _datastore(op, "target", ("candidate",))
    default = op.findtext("default-operation") or "merge"
    if default not in ("merge", "replace", "none"):
        raise RpcFailure(ErrorSpec(f"invalid default-operation {default}", tag="invalid-value"))
    holder = op.find("config")
    incoming = holder.find("configuration") if holder is not None else None
    text_holder = op.find("config-text")
    if text_holder is not None:
        incoming = text.parse_text(text_holder.findtext("configuration-text") or "")
    if incoming is None:
        raise RpcFailure(ErrorSpec("missing <config>", tag="missing-element", bad_element="config"))
    ctx.db.dialect.check_statements(incoming)
    if default == "replace":
        ctx.db.edit(ctx.session, lambda _: tree.plain_copy(incoming))
    else:

        def merge(candidate: Element) -> None:
            tree.edit(candidate, incoming, default_op=default, honour_replace=False, strict=True)

        ctx.db.edit(ctx.session, merge)
    return None


@rpc("discard-changes")
async def discard_changes(ctx: RpcContext, op: Element) -> Payload:
    ctx.db.discard(ctx.session)
    return None


@rpc("validate")
async def validate_candidate(ctx: RpcContext, op: Element) -> Payload:
    _datastore(op, "source", ("candidate",))
    ctx.db.check(ctx.db.candidate_of(ctx.session))
    return None


@rpc("open-configuration")
async def open_configuration(ctx: RpcContext, op: Element) -> Payload:
    """Only `<private/>`: ephemeral and dynamic databases are not modelled.

    Before Junos 18.2R1 the reply carried the warning "uncommitted changes will be
    discarded on exit"; later releases send none (`<open-configuration>` reference
    page). PyEZ's `Config(mode="private")` tolerates exactly that warning.
    """
    if op.find("private") is None:
        raise RpcFailure(ErrorSpec("only a private configuration database can be opened"))
    ctx.db.open_private(ctx.session)
    if _release(ctx.device.version) < PRIVATE_WARNING_UNTIL:
        return [ErrorSpec("uncommitted changes will be discarded on exit", severity="warning")]
    return None


@rpc("close-configuration")
async def close_configuration(ctx: RpcContext, op: Element) -> Payload:
    ctx.db.close_private(ctx.session)
    return None


def junos_release(version: str) -> str:
    """The release in Junos's namespace URIs: `21.4R3-S5.4` → `21.4R3`."""
    m = re.match(r"\d+\.\d+[A-Z]\d+", version)
    return m.group(0) if m else version


def _release(version: str) -> tuple[int, int]:
    """`21.4R3-S5.4` → (21, 4)."""
    major, _, rest = version.partition(".")
    minor = "".join(itertools.takewhile(str.isdigit, rest))
    return (int(major) if is_digits(major) else 0, int(minor) if minor else 0)


# --------------------------------------------------------------------------- commit


def _int(raw: str) -> int:
    if not is_digits(raw.strip()):
        raise RpcFailure(ErrorSpec(f"invalid number {raw!r}", bad_element=raw))
    return int(raw)


async def _commit(
    ctx: RpcContext, *, check: bool, confirm_minutes: float | None, log: str | None
) -> CommitOutcome:
    if ctx.session.id not in ctx.db.private:
        ctx.db.check_writable(ctx.session)
    injected = ctx.faults.take_commit_error()
    if injected is not None:
        raise RpcFailure(ErrorSpec(injected), ErrorSpec(CHECKOUT_FAILED))
    return await ctx.db.commit(ctx.session, check=check, confirm_minutes=confirm_minutes, log=log)


def _warnings(ctx: RpcContext) -> list[Element]:
    """The warnings the switch is set to add to a successful commit."""
    return [ErrorSpec(w, severity="warning").element() for w in ctx.faults.commit_warnings]


@rpc("commit-configuration")
async def commit_configuration(ctx: RpcContext, op: Element) -> Payload:
    if op.find("at-time") is not None:
        raise RpcFailure(ErrorSpec("commit at is not supported by the simulator"))
    check = op.find("check") is not None
    confirm = None
    if op.find("confirmed") is not None:
        confirm = _int(op.findtext("confirm-timeout") or str(DEFAULT_CONFIRM_MINUTES))
    outcome = await _commit(ctx, check=check, confirm_minutes=confirm, log=op.findtext("log"))
    results = _element("commit-results")
    if not outcome.changed:
        return [results]  # a private copy without changes: nothing between the tags
    results.extend(_warnings(ctx))
    if outcome.private:
        results.append(_element("load-success"))
    engine = etree.SubElement(results, "routing-engine")
    engine.append(_element("name", "re0"))
    engine.append(_element("commit-check-success" if check else "commit-success"))
    return [results]


@rpc("commit")
async def commit(ctx: RpcContext, op: Element) -> Payload:
    confirm = None
    if op.find("confirmed") is not None:
        confirm = _int(op.findtext("confirm-timeout") or str(DEFAULT_CONFIRM_MINUTES * 60)) / 60
    await _commit(ctx, check=False, confirm_minutes=confirm, log=None)
    warnings = _warnings(ctx)
    return [*warnings, _element("ok")] if warnings else None


# --------------------------------------------------------------------------- sessions


@rpc("close-session")
async def close_session(ctx: RpcContext, op: Element) -> Payload:
    ctx.end_session()
    return None


@rpc("kill-session")
async def kill_session(ctx: RpcContext, op: Element) -> Payload:
    target = _int(op.findtext("session-id") or "")
    if target == ctx.session.id or not ctx.kill_session(target):
        raise RpcFailure(ErrorSpec(f"session {target} cannot be killed", tag="invalid-value"))
    return None
