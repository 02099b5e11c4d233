"""`metalnet node`: physical servers, their NIC, cabling and BMC."""

from __future__ import annotations

import typer

from metalnet.cli.common import JSON_OPTION, print_fields, print_json, print_rows, say, state
from metalnet.cli.secrets import read_password

app = typer.Typer(help="Enrol, list, show and delete bare-metal nodes.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    name: str,
    mac: str = typer.Option(..., help="MAC of the NIC cabled to the switch port."),
    switch: str = typer.Option(..., help="Switch the NIC is cabled to."),
    port: str = typer.Option(..., help="Switch interface, e.g. ge-0/0/1."),
    bmc: str = typer.Option(
        ...,
        help="BMC URL: redfish+http://HOST:PORT/redfish/v1/Systems/ID or ipmi://HOST:PORT.",
    ),
    bmc_username: str | None = typer.Option(None, help="BMC user name."),
    bmc_password_env: str | None = typer.Option(
        None, help="Name of an environment variable holding the BMC password."
    ),
    bmc_password: str | None = typer.Option(None, help="BMC password (prefer --bmc-password-env)."),
    skip_initial_erase: bool = typer.Option(
        False,
        "--skip-initial-erase",
        help="Offer the node at once, without erasing its disk first (audited).",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Enrol a node; its port is wanted in the service VLAN. The node is erased and the
    erase verified (state cleaning) before it is first offered.

    Example: metalnet node add n1 --mac aa:bb:cc:00:00:01 --switch tor1 --port ge-0/0/1
    --bmc ipmi://10.0.0.5:623 --bmc-username admin --bmc-password-env BMC_PW
    """
    from metalnet.service.models import NodeIn

    password = read_password("BMC password", bmc_password_env, bmc_password, prompt=False)
    body = NodeIn.of(
        name=name,
        mac=mac,
        switch=switch,
        port=port,
        bmc_url=bmc,
        bmc_username=bmc_username,
        bmc_password=password,
        skip_initial_erase=skip_initial_erase,
    )
    view = state(ctx).service.add_node(body)
    if json_out:
        print_json(view)
    else:
        say(f"node {name} added ({view.mac} on {switch} {port})")


@app.command("list")
def list_(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """List nodes with their state and cabling.  Example: metalnet node list"""
    views = state(ctx).service.list_nodes()
    if json_out:
        print_json(views)
    else:
        columns = ["name", "state", "mac", "switch", "port", "desired_vlan", "bmc_url"]
        print_rows("nodes", columns, views)


@app.command("show")
def show(ctx: typer.Context, name: str, json_out: bool = JSON_OPTION) -> None:
    """Show one node.  Example: metalnet node show n1 --json"""
    view = state(ctx).service.get_node(name)
    print_json(view) if json_out else print_fields(view)


@app.command("delete")
def delete(ctx: typer.Context, name: str) -> None:
    """Remove a node with no instance; its port will be parked.  Example: metalnet node delete n1"""
    state(ctx).service.delete_node(name)
    say(f"node {name} deleted")


@app.command("clear")
def clear(ctx: typer.Context, name: str) -> None:
    """Return a quarantined node (failed erase) to service after you fixed its disk.

    Example: metalnet node clear n1
    """
    state(ctx).service.clear_node(name)
    say(f"node {name} cleared: its disk is erased again before it is offered")
