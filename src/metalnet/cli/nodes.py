"""`metalnet node`: physical servers, their NIC, cabling and BMC."""

from __future__ import annotations

from urllib.parse import quote

import typer
from sqlalchemy import select

from metalnet import inventory
from metalnet.cli.common import JSON_OPTION, audited, print_fields, print_json, print_table, state
from metalnet.cli.secrets import read_password
from metalnet.db.models import Node
from metalnet.lifecycle import instances
from metalnet.views import node_view

app = typer.Typer(help="Enrol, list, show and delete bare-metal nodes.", no_args_is_help=True)


def _add_target(kwargs: dict) -> str:
    """The audit target of `node add`: the node, and whether its erase was skipped."""
    skipped = " (--skip-initial-erase)" if kwargs.get("skip_initial_erase") else ""
    return f"{kwargs.get('name', '')}{skipped}"


@app.command("add")
@audited("node add", target=_add_target)
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
    password = read_password("BMC password", bmc_password_env, bmc_password, prompt=False)
    app_state = state(ctx)
    if api := app_state.remote:
        body = {
            "name": name,
            "mac": mac,
            "switch": switch,
            "port": port,
            "bmc_url": bmc,
            "bmc_username": bmc_username,
            "bmc_password": password,
            "skip_initial_erase": skip_initial_erase,
        }
        view = api.call("POST", "/v1/nodes", body)
    else:
        with app_state.database().session() as session:
            node = inventory.add_node(
                session,
                app_state.settings,
                name,
                mac,
                switch,
                port,
                bmc,
                bmc_username,
                password,
                initial_erase=not skip_initial_erase,
            )
            view = node_view(node)
    if json_out:
        print_json(view)
    else:
        typer.echo(f"node {name} added ({view['mac']} on {switch} {port})")


@app.command("list")
def list_(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """List nodes with their state and cabling.  Example: metalnet node list"""
    if api := state(ctx).remote:
        views = api.call("GET", "/v1/nodes")
    else:
        with state(ctx).database().session() as session:
            views = [node_view(n) for n in session.scalars(select(Node).order_by(Node.name))]
    if json_out:
        print_json(views)
        return
    columns = ["name", "state", "mac", "switch", "port", "desired_vlan", "bmc_url"]
    print_table("nodes", columns, ([v[c] for c in columns] for v in views))


@app.command("show")
def show(ctx: typer.Context, name: str, json_out: bool = JSON_OPTION) -> None:
    """Show one node.  Example: metalnet node show n1 --json"""
    if api := state(ctx).remote:
        view = api.call("GET", f"/v1/nodes/{quote(name)}")
    else:
        with state(ctx).database().session() as session:
            view = node_view(inventory.get_node(session, name))
    print_json(view) if json_out else print_fields(view)


@app.command("delete")
@audited("node delete")
def delete(ctx: typer.Context, name: str) -> None:
    """Remove a node with no instance; its port will be parked.  Example: metalnet node delete n1"""
    app_state = state(ctx)
    if api := app_state.remote:
        api.call("DELETE", f"/v1/nodes/{quote(name)}")
    else:
        with app_state.database().session() as session:
            inventory.delete_node(session, app_state.settings, name)
    typer.echo(f"node {name} deleted")


@app.command("clear")
@audited("node clear")
def clear(ctx: typer.Context, name: str) -> None:
    """Return a quarantined node (failed erase) to service after you fixed its disk.

    Example: metalnet node clear n1
    """
    if api := state(ctx).remote:
        api.call("POST", f"/v1/nodes/{quote(name)}/clear")
    else:
        with state(ctx).database().session() as session:
            instances.clear_node(session, name)
    typer.echo(f"node {name} cleared: available again")
