"""The `metalnet` command line.

Commands are loaded on use: `metalnet node add` imports the node commands and what
they need, never the simulators, the demo or the controller, and `metalnet --help`
lists every command from the table below without importing any of them.
"""

from __future__ import annotations

import importlib

import click
import typer

from metalnet.cli.common import AppState, MetalnetGroup

# name -> (module:attribute, one-line help). The attribute is a Typer app (a command
# group) or a command function.
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("metalnet.cli.db:app", "Create or upgrade the database schema."),
    "project": ("metalnet.cli.projects:app", "Create, list, show and delete projects (tenants)."),
    "network": ("metalnet.cli.networks:app", "Create, list, show and delete project networks."),
    "switch": (
        "metalnet.cli.switches:app",
        "Register switches and inspect or change their ports.",
    ),
    "node": ("metalnet.cli.nodes:app", "Enrol, list, show and delete bare-metal nodes."),
    "instance": (
        "metalnet.cli.instances:app",
        "Spawn (create) and terminate (delete) instances; `metalnet serve` carries them out.",
    ),
    "serve": (
        "metalnet.cli.serve:serve",
        "Run the controller until SIGINT/SIGTERM; resumes unfinished lifecycles on start.",
    ),
    "agent": (
        "metalnet.cli.agent:agent",
        "Fetch this node's task (deploy or erase), run it, report; exit 0 on success.",
    ),
    "demo": (
        "metalnet.cli.demo:demo",
        "Run the whole lifecycle on embedded defaults: exit 0 only if every check held.",
    ),
    "reconcile": (
        "metalnet.cli.reconcile:reconcile_command",
        "Read every switch, report drift (port, expected VLAN, actual VLAN), and fix it.",
    ),
    "token": ("metalnet.cli.tokens:app", "Create, list and revoke REST API tokens."),
    "secrets": (
        "metalnet.cli.secrets:app",
        "Manage the keys stored secrets are encrypted with.",
    ),
    "audit": (
        "metalnet.cli.tokens:audit_command",
        "Show the audit log: every change through the CLI or API, by whom, with its result.",
    ),
    "sim": ("metalnet.cli.sim:app", "Simulators for trying metalnet without hardware."),
    "lab": (
        "metalnet.cli.lab:app",
        "Start or stop a simulated lab (switches, BMCs, nodes, controller) to try by hand.",
    ),
    "boot-server": (
        "metalnet.cli.boot:boot_server",
        "Run the service network's DHCP/TFTP boot server (dnsmasq) for the enrolled nodes.",
    ),
    "ramdisk": ("metalnet.cli.ramdisk:app", "Build the provisioning ramdisk nodes network-boot."),
    "image": ("metalnet.cli.image:app", "Build the bootable demo disk image a lab deploys."),
    "dhcp-agent": (
        "metalnet.cli.dhcp_agent:dhcp_agent",
        "Run the project networks' DHCP servers (dnsmasq) from the database on this host.",
    ),
}


class Commands(MetalnetGroup):
    """The top-level group: commands imported when invoked, listed from COMMANDS."""

    _listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, summary = COMMANDS[cmd_name]
        if self._listing:
            return click.Command(cmd_name, help=summary, short_help=summary)
        return load(cmd_name, target)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def load(name: str, target: str) -> click.Command:
    """Import one command group (a Typer app) or command (a function) as a click command."""
    module, attribute = target.split(":")
    obj = getattr(importlib.import_module(module), attribute)
    if isinstance(obj, typer.Typer):
        command: click.Command = typer.main.get_group(obj)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(obj)
        command = typer.main.get_command(single)
    command.name = name
    return command


app = typer.Typer(
    cls=Commands,
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
