"""`metalnet demo`: spawn and terminate instances in a simulated lab, checking every step."""

from __future__ import annotations

import logging

import typer

from metalnet.cli.common import console, print_json, print_table
from metalnet.demo import run_demo
from metalnet.errors import MetalnetError


class DemoFailed(MetalnetError):
    """An invariant did not hold."""


def demo(
    nodes: int = typer.Option(4, min=1, max=48, help="Number of simulated nodes."),
    commit_latency: float = typer.Option(
        0.3, min=0.0, help="Seconds each simulated switch commit takes."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as one JSON document."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step and commit."),
) -> None:
    """Run the whole lifecycle on embedded defaults (no root): exit 0 only if every check held.

    Example: metalnet demo --nodes 6
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
    )
    say = (lambda _m: None) if json_out else (lambda m: console.print(f"[bold]demo[/]: {m}"))
    report = run_demo(nodes=nodes, progress=say, commit_latency=commit_latency)
    if json_out:
        print_json(report)
    else:
        _print(report)
    if not report["ok"]:
        raise DemoFailed(
            f"{len(report['violations'])} invariant violation(s): {report['violations'][0]}"
        )


def _print(report: dict) -> None:
    columns = ["instance", "project", "node", "switch", "port", "project_vlan", "final_state"]
    print_table("nodes", columns, ([r[c] for c in columns] for r in report["nodes"]))
    print_table("mean seconds per step", ["step", "seconds"], report["step_mean_seconds"].items())
    failed = [c for c in report["checks"] if not c["ok"]]
    console.print(
        f"spawn of all: {report['spawn_seconds']}s, terminate of all: "
        f"{report['terminate_seconds']}s, total {report['total_seconds']}s; "
        f"{report['switch_commits']} switch commits; {len(report['checks'])} checks, "
        f"{report['netconf_step_checks']} NETCONF reads after steps; "
        f"service VLAN {report['service_vlan']}"
    )
    for violation in report["violations"]:
        console.print(f"[red]VIOLATION[/] {violation}")
    for check in failed:
        console.print(f"[red]FAILED[/] {check['check']}: {check['detail']}")
    if report["ok"]:
        console.print("[green]demo passed: every invariant held[/]")
