"""The `metalnet` command line."""

from __future__ import annotations

import typer

from metalnet.cli import (
    db,
    instances,
    lab,
    networks,
    nodes,
    projects,
    secrets,
    sim,
    switches,
    tokens,
)
from metalnet.cli.agent import agent
from metalnet.cli.common import AppState, MetalnetGroup
from metalnet.cli.demo import demo
from metalnet.cli.reconcile import reconcile_command
from metalnet.cli.serve import serve

app = typer.Typer(
    cls=MetalnetGroup,
    help="metalnet: moves bare-metal servers' switch ports between the provisioning VLAN "
    "and their tenants' VLANs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    config: str | None = typer.Option(
        None, "--config", envvar="METALNET_CONFIG", help="TOML configuration file."
    ),
    db_url: str | None = typer.Option(
        None,
        "--db",
        help="Database URL (overrides the config file and METALNET_DATABASE_URL), "
        "e.g. sqlite:///metalnet.db or postgresql://user@host/db.",
    ),
    url: str | None = typer.Option(
        None,
        "--url",
        envvar="METALNET_URL",
        help="Work against a remote `metalnet serve` (token from METALNET_TOKEN).",
    ),
    ca_file: str | None = typer.Option(
        None,
        "--ca-file",
        envvar="METALNET_CA_FILE",
        help="CA certificate an https:// --url is verified against (default: system CAs).",
    ),
) -> None:
    """Global options apply to every command."""
    ctx.obj = AppState(config_path=config, database_url=db_url, url=url, ca_file=ca_file)


app.add_typer(db.app, name="db")
app.add_typer(projects.app, name="project")
app.add_typer(networks.app, name="network")
app.add_typer(switches.app, name="switch")
app.add_typer(nodes.app, name="node")
app.add_typer(instances.app, name="instance")
app.command("serve")(serve)
app.command("agent")(agent)
app.command("demo")(demo)
app.command("reconcile")(reconcile_command)
app.add_typer(tokens.app, name="token")
app.add_typer(secrets.app, name="secrets")
app.command("audit")(tokens.audit_command)
app.add_typer(sim.app, name="sim")
app.add_typer(lab.app, name="lab")
