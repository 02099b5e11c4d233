"""`metalnet demo`: spawn and terminate instances in a simulated lab, checking every step."""

from __future__ import annotations

import logging

import typer

from metalnet.cli.common import console, print_json, print_table
from metalnet.errors import MetalnetError


class DemoFailed(MetalnetError):
    """An invariant did not hold."""


class LabUnavailable(MetalnetError):
    """The root-mode lab cannot run here (not root, or a host tool is missing)."""


def demo(
    nodes: int | None = typer.Option(
        None, min=1, max=48, help="Number of simulated nodes (default 4; 2 with --vm)."
    ),
    commit_latency: float = typer.Option(
        0.3, min=0.0, help="Seconds each simulated switch commit takes."
    ),
    netns: bool = typer.Option(
        False,
        "--netns",
        help="Root only: real data plane (namespaces, bridges, dnsmasq) and a packet-measured "
        "reachability matrix after every step.",
    ),
    vm: bool = typer.Option(
        False,
        "--vm",
        help="Root only: every node is a QEMU machine (TCG) that network-boots the real "
        "ramdisk, is deployed by the real agent and boots its tenant OS from its disk.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as one JSON document."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step and commit."),
) -> None:
    """Run the whole lifecycle on embedded defaults: exit 0 only if every check held.

    Without --netns no root is needed; with it the isolation is proven with packets;
    --vm also boots real firmware, the ramdisk and the deployed disk in QEMU.

    Example: metalnet demo --nodes 6; sudo metalnet demo --netns; sudo metalnet demo --vm
    """
    from metalnet.sim.lab.demo import run_demo
    from metalnet.sim.lab.netns import NetLabNeedsRoot, ToolMissing
    from metalnet.sim.lab.vm import VmError

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
    )
    say = (lambda _m: None) if json_out else (lambda m: console.print(f"[bold]demo[/]: {m}"))
    try:
        report = run_demo(
            nodes=nodes or (2 if vm else 4),
            progress=say,
            commit_latency=commit_latency,
            netns=netns,
            vm=vm,
        )
    except (NetLabNeedsRoot, ToolMissing, VmError) as exc:
        raise LabUnavailable(str(exc)) from None
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
    if "isolation" in report:
        _print_isolation(report["isolation"])
    if "vm" in report:
        _print_vm(report["vm"])
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


def _print_isolation(isolation: dict) -> None:
    """Each final matrix as a table (row reaches column), then the per-step verdicts."""
    for label, final in isolation["final"].items():
        names = list(final["reach"])
        rows = (
            [src, _planes(final["planes"][src]), *(_cell(final, src, dst) for dst in names)]
            for src in names
        )
        print_table(f"reachability {label} (row -> column)", ["from", "on", *names], rows)
        for node, held in final["addresses"].items():
            console.print(f"  {node}: {', '.join(held) or 'no address'}")
    pairs = isolation["step_pairs"]
    console.print(
        f"isolation: {isolation['steps_passed']} step matrices matched the design, "
        f"{isolation['steps_failed']} did not ({pairs['must_reach']} pairs that must reach, "
        f"{pairs['must_not_reach']} that must not, {pairs['either']} left open while moving); "
        f"probe {isolation['probe']}, mean {isolation['probe_mean_seconds']}s per matrix"
    )


def _print_vm(vm: dict) -> None:
    """Where the time went with real machines: each boot's phases (means per boot
    device), then the figures per boot and per task."""
    rows = (
        [device, phase, seconds]
        for device, phases in vm["phase_mean_seconds"].items()
        for phase, seconds in phases.items()
    )
    print_table("mean seconds per boot phase", ["boot", "phase", "seconds"], rows)
    for key in (
        "firmware_to_agent_seconds",
        "deploy_mb_per_s",
        "disk_boot_to_tenant_dhcp_seconds",
        "erase_mb_per_s",
    ):
        console.print(f"  {key.replace('_', ' ')}: {', '.join(map(str, vm[key])) or '-'}")
    met = "met" if vm.get("goal_met") else "NOT met"
    console.print(f"  goal: whole demo under {vm['goal_seconds']:g}s ({vm['accelerator']}): {met}")


def _cell(final: dict, src: str, dst: str) -> str:
    """'yes'/'no' as measured; marked when the design says otherwise, '.' on the diagonal,
    'n/m' where nothing could probe (a machine without a shell on its console)."""
    if src == dst:
        return "."
    if dst not in final["reach"][src]:
        return "n/m"
    reached, wanted = final["reach"][src][dst], final["expected"][src][dst]
    cell = "yes" if reached else "no"
    return cell if wanted is None or wanted == reached else f"{cell} (WRONG)"


def _planes(planes: list[int | None]) -> str:
    """Where the design puts an endpoint: 'off', 'VLAN 100', or several while it moves."""
    return " or ".join("off" if vlan is None else f"VLAN {vlan}" for vlan in planes)
