"""`metalnet switch`: the switches metalnet manages."""

from __future__ import annotations

import typer
from sqlalchemy import select

from metalnet import inventory
from metalnet.cli.common import JSON_OPTION, print_fields, print_json, print_table, state
from metalnet.cli.secrets import read_password
from metalnet.db.models import Switch
from metalnet.views import switch_view

app = typer.Typer(help="Register switches and inspect or change their ports.", no_args_is_help=True)


@app.command("add")
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
    json_out: bool = JSON_OPTION,
) -> None:
    """Register a switch; the password is prompted for unless given.

    Example: metalnet switch add tor1 --driver junos --address 192.0.2.10:830 --username netconf
    --password-env TOR1_PW
    """
    secret = read_password(f"password for switch {name}", password_env, password, prompt=True)
    with state(ctx).database().session() as session:
        view = switch_view(inventory.add_switch(session, name, driver, address, username, secret))
    print_json(view) if json_out else typer.echo(f"switch {name} added ({driver} at {address})")


@app.command("list")
def list_(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """List switches.  Example: metalnet switch list"""
    with state(ctx).database().session() as session:
        views = [switch_view(s) for s in session.scalars(select(Switch).order_by(Switch.name))]
    if json_out:
        print_json(views)
        return
    rows = ((v["name"], v["driver"], v["address"], v["username"], len(v["ports"])) for v in views)
    print_table("switches", ["name", "driver", "address", "username", "ports"], rows)


@app.command("show")
def show(ctx: typer.Context, name: str, json_out: bool = JSON_OPTION) -> None:
    """Show a switch and the ports metalnet knows on it.  Example: metalnet switch show tor1"""
    with state(ctx).database().session() as session:
        view = switch_view(inventory.get_switch(session, name))
    if json_out:
        print_json(view)
        return
    print_fields(view, skip=("ports",))
    rows = ((p["interface"], p["node"], p["mac"], p["desired_vlan"]) for p in view["ports"])
    print_table("ports", ["interface", "node", "mac", "desired_vlan"], rows)


@app.command("delete")
def delete(ctx: typer.Context, name: str) -> None:
    """Delete a switch none of whose ports holds a node.  Example: metalnet switch delete tor1"""
    with state(ctx).database().session() as session:
        inventory.delete_switch(session, name)
    typer.echo(f"switch {name} deleted")
