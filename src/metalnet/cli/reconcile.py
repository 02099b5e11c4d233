"""`metalnet reconcile`: find and fix ports whose device state differs from the database."""

from __future__ import annotations

import typer

from metalnet.cli.common import JSON_OPTION, audited, print_json, print_table, say, state


def reconcile_command(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Report drift, change nothing."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Read every switch, report drift (port, expected VLAN, actual VLAN), and fix it.

    A port matches only as an enabled access port in exactly its desired VLAN. Fixes
    never change the desired state; a port whose owner changed meanwhile is left to it.
    --dry-run writes nothing at all, not even the audit log.
    Exit 0 when every port is (now) where the database says, 1 otherwise.
    Example: metalnet reconcile --dry-run --json
    """
    from metalnet.switches.reconcile import reconcile

    state(ctx).local_only("reconcile")
    reports = reconcile(state(ctx).database(), fix=False) if dry_run else _fix(ctx)
    if json_out:
        print_json([r.as_dict() for r in reports])
    else:
        rows = (
            (
                d.switch,
                d.interface,
                d.node,
                d.expected_vlan,
                d.device,
                "fixed" if d.fixed else (d.error or "not fixed (dry run)" if dry_run else d.error),
            )
            for r in reports
            for d in r.drift
        )
        print_table("drift", ["switch", "port", "node", "expected", "device", "result"], rows)
        for r in reports:
            if r.error:
                say(f"switch {r.switch}: {r.error}")
        checked = sum(r.ports_checked for r in reports)
        say(f"{len(reports)} switches, {checked} ports checked")
    unresolved = any(r.error for r in reports) or any(not d.fixed for r in reports for d in r.drift)
    if unresolved:
        raise typer.Exit(1)


@audited("reconcile", lambda _kw: "fix")
def _fix(ctx: typer.Context) -> list:
    """Reconcile with corrections; a change to the switches, so it is audited."""
    from metalnet.switches.reconcile import reconcile

    return reconcile(state(ctx).database(), fix=True)
