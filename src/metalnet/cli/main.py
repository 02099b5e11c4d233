"""The `metalnet` command line.

Commands are loaded on use: `metalnet node add` imports the node commands and what
they need, never the simulators, the demo or the controller, and `metalnet --help`
lists every command from the table below without importing any of them.
"""

from __future__ import annotations

import gc
import importlib
import os
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption, _TyperParameter

from metalnet.cli.common import AppState, MetalnetGroup

if TYPE_CHECKING:
    from typer._click.formatting import HelpFormatter

# Objects the `metalnet` process makes before its first garbage collection: more than
# twice what the start-up of `project list` or `switch apply` makes (~130,000).
START_UP_OBJECTS = 300_000

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


class PlainValue(_TyperParameter):
    """A parameter whose value is taken as it is when there is nothing to convert.

    Typer builds a pydantic TypeAdapter for a parameter before coercing its value, even
    a None it then returns unchanged or a command-line string for a `str` parameter
    (which its adapter turns into the same string, typer/_adapters.py). For the
    global options and every command's --help that made `metalnet X --help` import
    pydantic (about a third of its start-up), and with a file name and an unused
    --reason, `switch apply` (~12 % of its instructions). Values that do need
    converting (a number, a path) still go through typer.
    """

    def process_value(self, ctx: typer.Context, value: Any) -> Any:
        if not self.taken_as_is(value):
            return super().process_value(ctx, value)
        return self.callback(ctx, self, value) if self.callback else value

    def taken_as_is(self, value: Any) -> bool:
        """None for an optional value nobody gave, or a string for a plain `str`."""
        if self.nargs != 1 or self.multiple:
            return False
        if value is None:
            return not self.required
        described = self.type_descriptor
        return (
            type(value) is str
            and described.annotation is str
            and described.parameter_info.parser is None
        )


class PlainOption(PlainValue, TyperOption):
    pass


class PlainArgument(PlainValue, TyperArgument):
    pass


def take_plain_values(command: TyperCommand | TyperGroup, ctx: typer.Context) -> None:
    """Make every parameter of a command and of its subcommands, --help included, a
    PlainValue (typer builds them as its own classes and offers no hook for that)."""
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option else [])]:
        if isinstance(param, TyperOption):
            param.__class__ = PlainOption
        elif isinstance(param, TyperArgument):
            param.__class__ = PlainArgument
    for sub in getattr(command, "commands", {}).values():
        take_plain_values(sub, ctx)


class Commands(MetalnetGroup):
    """The top-level group: commands imported when invoked, listed from COMMANDS."""

    _listing = False

    def get_params(self, ctx: typer.Context) -> list[Any]:
        """The global options and --help, as PlainValues: processed before any command
        runs, so `metalnet X --help` never converts a value."""
        take_plain_values(self, ctx)
        return super().get_params(ctx)

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> TyperCommand | TyperGroup | None:
        if cmd_name not in COMMANDS:
            return None
        target, summary = COMMANDS[cmd_name]
        if self._listing:
            return TyperCommand(cmd_name, help=summary, short_help=summary)
        command = load(cmd_name, target)
        take_plain_values(command, ctx)
        return command

    def format_help(self, ctx: typer.Context, formatter: HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def load(name: str, target: str) -> TyperCommand | TyperGroup:
    """Import one command group (a Typer app) or command (a function) as a click command."""
    module, attribute = target.split(":")
    obj = getattr(importlib.import_module(module), attribute)
    if isinstance(obj, typer.Typer):
        command: TyperCommand | TyperGroup = typer.main.get_group(obj)
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
    ctx.call_on_close(ctx.obj.close)


def collect_after_start_up() -> None:
    """No garbage collection until START_UP_OBJECTS more objects exist; then, and for
    the rest of the process, the collector's default thresholds.

    Start-up builds objects that live as long as the process (modules, classes, mapped
    tables: ~130,000 by the end of `project list`) and next to no garbage, yet at the
    default thresholds the collector walked them again and again while they were being
    built: ~4 % of the instructions of `project list`. The first collection now comes
    after more objects than any command's start-up makes; a long-running command
    (`serve`, an agent) then collects as usual.
    """
    defaults = gc.get_threshold()

    def after_first_collection(phase: str, _info: dict[str, int]) -> None:
        if phase == "stop":
            gc.set_threshold(*defaults)
            gc.callbacks.remove(after_first_collection)

    gc.set_threshold(START_UP_OBJECTS, *defaults[1:])
    gc.callbacks.append(after_first_collection)


def run() -> None:
    """The `metalnet` process: one command, then the interpreter's shutdown.

    At shutdown CPython clears every module and runs full garbage collections over all
    that is left (Python/pylifecycle.c, finalize_modules): walking the objects
    SQLAlchemy, pydantic and typer built at import, ~5 % of the instructions of
    `project list`. The command is over by then (its database closed by
    `AppState.close`), so what exists is frozen out of the collector first
    (`gc.freeze`); the process ends just the same.

    The first read model a command builds makes pydantic look for plugins in the entry
    points of every installed distribution (pydantic/plugin/_loader.py): ~1 % of
    `project list` with a project to show. metalnet uses none, so the process turns
    them off with pydantic's own switch (PYDANTIC_DISABLE_PLUGINS, docs.pydantic.dev,
    "Pydantic Plugins"), unless its environment already sets it.
    """
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    collect_after_start_up()
    try:
        app(prog_name="metalnet")
    finally:
        gc.freeze()
