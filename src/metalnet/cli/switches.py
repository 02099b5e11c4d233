"""`metalnet switch`: the switches metalnet manages."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from metalnet.cli.common import (
    JSON_OPTION,
    audited,
    console,
    print_fields,
    print_json,
    print_rows,
    print_table,
    say,
    state,
)
from metalnet.cli.secrets import read_password
from metalnet.errors import InputError, MetalnetError

if TYPE_CHECKING:
    from metalnet.switches.base import PortState
    from metalnet.switches.guard import Override
    from metalnet.switches.queue import ChangeOutcome
    from metalnet.switches.service import Desired, SwitchService

app = typer.Typer(help="Register switches and inspect or change their ports.", no_args_is_help=True)

FORCE_OPTION = typer.Option(
    False, "--force", help="Make a change the isolation guard refuses (needs --reason)."
)
REASON_OPTION = typer.Option(
    None, "--reason", help="Why the guard is overridden; recorded in the audit log."
)
HOST_KEY_OPTION = typer.Option(
    None,
    "--host-key",
    help="The switch's SSH host key: MD5 fingerprint aa:bb:.. or a key line (ssh-keyscan).",
)
CHASSIS_MAC_OPTION = typer.Option(
    None,
    "--chassis-mac",
    help="The switch's LLDP chassis MAC: how Ironic's local_link_information switch_id names it.",
)


@app.command("add")
@audited("switch add")
def add(
    ctx: typer.Context,
    name: str,
    driver: str = typer.Option("junos", help="Driver name (entry point metalnet.switch_drivers)."),
    address: str = typer.Option(..., help="HOST:PORT of the NETCONF/SSH service."),
    username: str = typer.Option(..., help="Login user."),
    password_env: str | None = typer.Option(
        None, help="Name of an environment variable holding the password."
    ),
    password: str | None = typer.Option(
        None, help="Password (for scripts; prefer --password-env)."
    ),
    chassis_mac: str | None = CHASSIS_MAC_OPTION,
    host_key: str | None = HOST_KEY_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Register a switch; the password is prompted for unless given. Its SSH host key is
    the one given, else read from the switch now and shown (check it), else recorded at
    the first connection.

    Example: metalnet switch add tor1 --driver junos --address 192.0.2.10:830 --username netconf
    --password-env TOR1_PW --host-key "$(ssh-keyscan -p 830 192.0.2.10 | grep ed25519)"
    """
    from metalnet.service.models import SwitchIn
    from metalnet.switches import hostkeys

    if host_key is not None:
        state(ctx).local_only("switch add --host-key")
    given_key = hostkeys.normalize(host_key) if host_key is not None else None
    secret = read_password(f"password for switch {name}", password_env, password, prompt=True)
    body = SwitchIn.of(
        name=name,
        driver=driver,
        address=address,
        username=username,
        password=secret,
        chassis_mac=chassis_mac,
    )
    view = state(ctx).service.add_switch(body)
    note = None if state(ctx).url else _record_host_key(ctx, name, given_key)
    if json_out:
        print_json(view)
        return
    say(f"switch {name} added ({driver} at {address})")
    if note:
        say(note)


def _record_host_key(ctx: typer.Context, name: str, given: str | None) -> str:
    """Record the switch's host key: the given one, else the one it presents now (read
    without logging in), else none yet (the first session records it). Says which."""
    from metalnet import inventory
    from metalnet.switches import hostkeys

    db = state(ctx).database()
    with db.session() as session:
        switch = inventory.get_switch(session, name)
        host, port = switch.host, switch.port
    note = "given"
    key = given
    if key is None:
        try:
            key = hostkeys.scan(host, port, min(state(ctx).settings.switch_timeout, 10.0))
            note = f"read from {host}:{port} now: check it against the switch's own"
        except hostkeys.SwitchError as exc:
            return f"host key - (not read now ({exc.reason}); recorded at the first connection)"
    with db.session() as session:
        inventory.get_switch(session, name).host_key = key
    return f"host key {key} ({note})"


@app.command("rekey")
@audited("switch rekey", lambda kw: f"{kw['name']} {kw['host_key'] or '(read from the switch)'}")
def rekey(ctx: typer.Context, name: str, host_key: str | None = HOST_KEY_OPTION) -> None:
    """Accept a new SSH host key for a switch (after it was really re-keyed): the one given,
    else the one it presents now.

    Example: metalnet switch rekey tor1 --host-key "ssh-ed25519 AAAAC3Nza..."
    """
    from metalnet import inventory
    from metalnet.switches import hostkeys

    state(ctx).local_only("switch rekey")
    new = hostkeys.normalize(host_key) if host_key is not None else None
    db = state(ctx).database()
    with db.session() as session:
        switch = inventory.get_switch(session, name)
        host, port = switch.host, switch.port
    if new is None:
        new = hostkeys.scan(host, port, min(state(ctx).settings.switch_timeout, 10.0))
    with db.session() as session:
        switch = inventory.get_switch(session, name)
        old, switch.host_key = switch.host_key, new
    say(f"switch {name} host key {old or '-'} -> {new}")


@app.command("set")
@audited("switch set")
def set_(ctx: typer.Context, name: str, chassis_mac: str = CHASSIS_MAC_OPTION) -> None:
    """Change a switch's recorded facts.

    Example: metalnet switch set tor1 --chassis-mac 3c:fd:fe:00:00:01
    """
    from metalnet import inventory

    state(ctx).local_only("switch set")
    with state(ctx).database().session() as session:
        inventory.set_chassis_mac(session, inventory.get_switch(session, name), chassis_mac)
    say(f"switch {name}: chassis MAC {chassis_mac}")


@app.command("list")
def list_(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """List switches.  Example: metalnet switch list"""
    views = state(ctx).service.list_switches()
    if json_out:
        print_json(views)
        return
    rows = ((v.name, v.driver, v.address, v.username, len(v.ports)) for v in views)
    print_table("switches", ["name", "driver", "address", "username", "ports"], rows)


@app.command("show")
def show(ctx: typer.Context, name: str, json_out: bool = JSON_OPTION) -> None:
    """Show a switch and the ports metalnet knows on it.  Example: metalnet switch show tor1"""
    view = state(ctx).service.get_switch(name)
    if json_out:
        print_json(view)
        return
    print_fields(view, skip=("ports",))
    columns = ["interface", "node", "mac", "desired_vlan", "desired_enabled"]
    print_rows("ports", columns, view.ports)


@app.command("delete")
@audited("switch delete")
def delete(ctx: typer.Context, name: str) -> None:
    """Delete a switch none of whose ports holds a node.  Example: metalnet switch delete tor1"""
    state(ctx).service.delete_switch(name)
    say(f"switch {name} deleted")


def _service(ctx: typer.Context, command: str) -> SwitchService:
    from metalnet.switches.service import SwitchService

    state(ctx).local_only(f"switch {command}")
    return SwitchService(state(ctx).database())


def _override(force: bool, reason: str | None) -> Override | None:
    """`--force --reason TEXT` as a guard override; one without the other is bad input."""
    from metalnet import audit
    from metalnet.switches.guard import Override

    if reason is not None and not reason.strip():
        raise InputError("--reason must say why (it is recorded in the audit log)")
    if force and reason is None:
        raise InputError("--force needs --reason TEXT (recorded in the audit log)")
    if reason is not None and not force:
        raise InputError("--reason is only used with --force")
    return Override(audit.cli_actor(), reason.strip()) if force and reason else None


def _submit(service: SwitchService, changes: list, override: Override | None) -> list:
    """Submit through the guard; a refusal names how to override it."""
    from metalnet.switches.guard import PortRefused

    try:
        return service.submit_ports(changes, override)
    except PortRefused as exc:
        raise PortRefused(exc.refusals, hint="override with --force --reason TEXT") from None


@app.command("ports")
def ports(ctx: typer.Context, name: str, json_out: bool = JSON_OPTION) -> None:
    """Read the ports from the device, beside what the database expects (the drift rule).

    Example: metalnet switch ports tor1 --json
    """
    service = _service(ctx, "ports")
    try:
        desired = service.desired_ports(name)
        actual = service.read_ports(name, sorted(desired) or None)
    finally:
        service.close()
    rows = port_rows(desired, actual)
    if json_out:
        print_json(rows)
        return
    columns = ["interface", "desired", "device", "in_sync"]
    print_table(f"ports of {name}", columns, ([r[c] for c in columns] for r in rows))


@app.command("port-set")
@audited("switch port-set", lambda kw: f"{kw['name']} {kw['interface']} vlan {kw['vlan']}")
def port_set(
    ctx: typer.Context,
    name: str,
    interface: str,
    vlan: str = typer.Option(..., help="VLAN id 1-4094 the port becomes an access port in."),
    force: bool = FORCE_OPTION,
    reason: str | None = REASON_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Make one port an access port in a VLAN: guarded, recorded, committed, logged.

    The isolation guard refuses a VLAN the port's owner may not be in: an unbound port
    is only parked, an idle node's port is only in the service VLAN, an instance's port
    follows its lifecycle. --force --reason TEXT overrides it and is audited.
    A port disabled because its node may still run a tenant's OS stays disabled.
    Example: metalnet switch port-set tor1 ge-0/0/5 --vlan 4000
    """
    from metalnet import inventory
    from metalnet.switches import check_interface
    from metalnet.validate import check_vlan

    vlan_id = check_vlan(vlan)
    override = _override(force, reason)
    service = _service(ctx, "port-set")
    with state(ctx).database().session() as session:
        check_interface(inventory.get_switch(session, name).driver, interface)
    try:
        outcome = _submit(service, [(name, interface, vlan_id)], override)[0].result(
            service.timeout * 4
        )
    finally:
        service.close()
    if not outcome.ok:
        raise SwitchFailed(outcome.message)
    enabled = outcome.change.enabled
    view = {
        "switch": name,
        "interface": interface,
        "vlan": vlan_id,
        "enabled": enabled,
        "seconds": round(outcome.latency, 3),
    }
    kept = "" if enabled else ", still disabled (its node may run a tenant's OS)"
    print_json(view) if json_out else typer.echo(
        f"{name} {interface} is now in VLAN {vlan_id}{kept} ({outcome.latency:.2f}s)"
    )


@app.command("check")
def check(ctx: typer.Context, name: str, json_out: bool = JSON_OPTION) -> None:
    """Connect, show model and version, and whether the device matches the database.

    A port matches only as an access port in exactly its desired VLAN, enabled or
    disabled as desired.
    Exit 1 on any drift. Example: metalnet switch check tor1
    """
    service = _service(ctx, "check")
    try:
        with service.directory.connect(name) as driver:
            facts = driver.facts()
            desired = service.desired_ports(name)
            actual = driver.read_ports(sorted(desired)) if desired else {}
    finally:
        service.close()
    drift = [r for r in port_rows(desired, actual) if not r["in_sync"]]
    view = {"switch": name, **facts, "ports_checked": len(desired), "drift": drift}
    if json_out:
        print_json(view)
    else:
        print_fields({k: v for k, v in view.items() if k != "drift"})
        for row in drift:
            typer.echo(
                f"drift: {row['interface']} wanted {row['desired']}, device has {row['device']}"
            )
        if not drift:
            typer.echo("device matches the database")
    if drift:
        raise typer.Exit(1)


@app.command("log")
def log(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="Only this switch."),
    limit: int = typer.Option(50, help="Newest N entries (1 to 1000)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """The switch change log: every commit with ports, VLANs, result and duration.

    Example: metalnet switch log tor1 --limit 10
    """
    views = state(ctx).service.switch_changes(name, limit)
    if json_out:
        print_json(views)
        return
    rows = (
        (
            v.at,
            v.switch,
            " ".join(
                f"{p['interface']}->{p['vlan']}" + ("" if p.get("enabled", True) else " disabled")
                for p in v.ports
            ),
            "ok" if v.ok else "FAILED",
            v.seconds,
            v.message,
        )
        for v in views
    )
    print_table(
        "switch change log", ["at", "switch", "ports", "result", "seconds", "message"], rows
    )


def port_rows(desired: dict[str, Desired], actual: dict[str, PortState]) -> list[dict]:
    """One row per known port: desired state vs the device, judged by `switches.drift`."""
    from metalnet.switches.drift import describe, desired_text, in_sync
    from metalnet.switches.service import Desired

    rows = []
    for interface in sorted(set(desired) | set(actual)):
        state_ = actual.get(interface)
        wish = desired.get(interface, Desired(None))
        rows.append(
            {
                "interface": interface,
                "desired_vlan": wish.vlan,
                "desired_enabled": wish.enabled,
                "desired": desired_text(wish.vlan, wish.enabled),
                "actual_vlan": state_.vlan if state_ else None,
                "device": describe(state_),
                "enabled": state_.enabled if state_ else None,
                "in_sync": in_sync(wish.vlan, state_, wish.enabled),
            }
        )
    return rows


class SwitchFailed(MetalnetError):
    """The switch refused or could not be reached; the message names it."""


def _read_changes(path: str) -> list[tuple[str, str, int]]:
    """Parse the apply file: a JSON list of {"switch", "port", "vlan"} objects."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        data = json.loads(text)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of {{switch, port, vlan}} objects")
    changes = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or set(item) != {"switch", "port", "vlan"}:
            raise InputError(
                f"{path} entry {index}: expected exactly the keys switch, port, vlan; got {item!r}"
            )
        if not isinstance(item["switch"], str) or not isinstance(item["port"], str):
            raise InputError(f"{path} entry {index}: switch and port must be strings")
        if isinstance(item["vlan"], bool) or not isinstance(item["vlan"], int):
            raise InputError(f"{path} entry {index}: vlan {item['vlan']!r} is not an integer")
        changes.append((item["switch"], item["port"], item["vlan"]))
    return changes


@app.command("apply")
@audited("switch apply", lambda kw: str(kw["path"]))
def apply(
    ctx: typer.Context,
    path: str = typer.Argument(
        ..., help='JSON file (or - for stdin): [{"switch", "port", "vlan"}].'
    ),
    force: bool = FORCE_OPTION,
    reason: str | None = REASON_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Apply many port changes through the work queue: one commit per switch.

    Every change passes the isolation guard first: if any is refused, nothing is
    applied (unless --force --reason TEXT, audited). Then every change gets its own
    result; a bad port fails alone. Exit 1 if any failed.
    Example: echo '[{"switch":"tor1","port":"ge-0/0/1","vlan":10}]' | metalnet switch apply -
    """
    changes = _read_changes(path)
    override = _override(force, reason)
    service = _service(ctx, "apply")
    started = time.monotonic()
    try:
        futures = _submit(service, changes, override)
        outcomes = _collect(futures, show=not json_out and console.is_terminal)
    finally:
        service.close()
    commits = service.queue.commits
    summary = _summary(outcomes, time.monotonic() - started)
    if json_out:
        print_json(
            {
                "summary": summary,
                "commits": commits,
                "changes": [_outcome_view(o) for o in outcomes],
            }
        )
    else:
        _print_apply(summary, outcomes, commits)
    if any(not o.ok for o in outcomes):
        raise typer.Exit(1)


def _collect(futures: list, show: bool) -> list[ChangeOutcome]:
    if not show:
        return [f.result() for f in futures]
    from concurrent.futures import as_completed

    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("committing", total=len(futures))
        for future in as_completed(futures):
            future.result()
            progress.advance(task)
    return [f.result() for f in futures]


def _outcome_view(o: ChangeOutcome) -> dict[str, object]:
    return {
        "switch": o.switch,
        "port": o.change.interface,
        "vlan": o.change.vlan,
        "ok": o.ok,
        "superseded": o.superseded,
        "message": o.message,
        "seconds": round(o.latency, 3),
    }


def _summary(outcomes: list[ChangeOutcome], seconds: float) -> list[dict[str, object]]:
    per_switch: dict[str, list[ChangeOutcome]] = {}
    for o in outcomes:
        per_switch.setdefault(o.switch, []).append(o)
    return [
        {
            "switch": sw,
            "ports": len(items),
            "ok": sum(o.ok for o in items),
            "failed": sum(not o.ok for o in items),
            "seconds": round(max(o.latency for o in items), 3),
        }
        for sw, items in sorted(per_switch.items())
    ] + [
        {
            "switch": "(all)",
            "ports": len(outcomes),
            "ok": sum(o.ok for o in outcomes),
            "failed": sum(not o.ok for o in outcomes),
            "seconds": round(seconds, 3),
        }
    ]


def _print_apply(summary: list[dict], outcomes: list[ChangeOutcome], commits: int) -> None:
    columns = ["switch", "ports", "ok", "failed", "seconds"]
    print_table(f"applied ({commits} commits)", columns, ([r[c] for c in columns] for r in summary))
    for o in outcomes:
        if not o.ok:
            typer.echo(
                f"failed: {o.switch} {o.change.interface} -> VLAN {o.change.vlan}: {o.message}",
                err=True,
            )
