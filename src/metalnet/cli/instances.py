"""`metalnet instance`: spawn and terminate tenants' servers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer

from metalnet.cli.common import JSON_OPTION, print_fields, print_json, print_rows, say, state
from metalnet.errors import InputError, MetalnetError

if TYPE_CHECKING:
    from metalnet.service.models import InstanceView

app = typer.Typer(
    help="Spawn (create) and terminate (delete) instances; `metalnet serve` carries them out.",
    no_args_is_help=True,
)

WAIT_OPTION = typer.Option(False, "--wait", help="Follow the lifecycle step by step until it ends.")
TIMEOUT_OPTION = typer.Option(1800, help="Seconds --wait waits.")
PROJECT_OPTION = typer.Option(
    None,
    "--project",
    "-p",
    help="The instance's project: picks one of two live instances of the same name (admin).",
)


class LifecycleFailed(MetalnetError):
    """The instance ended in the error state."""


def _wait(
    ctx: typer.Context, name: str, project: str, final: tuple[str, ...], timeout: float
) -> InstanceView:
    """Print each step as it starts and ends; return the instance's final view."""
    seen = 0
    deadline = time.monotonic() + timeout
    while True:
        view = state(ctx).service.get_instance(name, project)
        for event in view.history[seen:]:
            took = f" ({event.seconds:.2f}s)" if event.seconds is not None else ""
            say(f"  {event.step:<16} {event.message}{took}")
        seen = len(view.history)
        if view.state in final:
            return view
        if time.monotonic() > deadline:
            raise LifecycleFailed(
                f"instance {name!r} still at step {view.step} after {timeout:.0f}s"
            )
        time.sleep(0.2)


def _report(view: InstanceView, line: str, json_out: bool) -> None:
    print_json(view) if json_out else say(line)
    if view.state == "error":
        raise LifecycleFailed(f"instance {view.name!r}: {view.error}")


@app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    project: str = typer.Option(..., "--project", "-p", help="Project the instance belongs to."),
    network: str = typer.Option(..., help="Project network the node joins when active."),
    node: str | None = typer.Option(None, help="Node to use."),
    any_node: bool = typer.Option(False, "--any", help="Use any available node."),
    image: str = typer.Option(..., help="http(s) URL of the disk image."),
    sha256: str = typer.Option(..., help="Expected sha256 of the image."),
    wait: bool = WAIT_OPTION,
    timeout: float = TIMEOUT_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Spawn an instance on a node: service VLAN, PXE, deploy, boot disk, project VLAN.

    Example: metalnet instance create web1 -p acme --network web --any
    --image http://images/ubuntu.img --sha256 <64 hex> --wait
    """
    from metalnet.service.models import InstanceIn

    if bool(node) == any_node:
        raise InputError("give exactly one of --node NAME or --any")
    body = InstanceIn.of(
        name=name, project=project, network=network, node=node, image_url=image, sha256=sha256
    )
    view = state(ctx).service.create_instance(body)
    if wait:
        view = _wait(ctx, name, view.project, ("active", "error"), timeout)
    _report(view, f"instance {name} on node {view.node}: {view.state} ({view.step})", json_out)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str,
    project: str | None = PROJECT_OPTION,
    wait: bool = WAIT_OPTION,
    timeout: float = TIMEOUT_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Terminate: port to service VLAN, PXE, erase and verify the disk, power off.

    Example: metalnet instance delete web1 -p acme --wait
    """
    view = state(ctx).service.delete_instance(name, project)
    if wait:
        view = _wait(ctx, name, view.project, ("deleted", "error"), timeout)
    _report(view, f"instance {name}: {view.state} ({view.step})", json_out)


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Include deleted instances."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List instances with their state and current step.  Example: metalnet instance list"""
    views = state(ctx).service.list_instances(all_)
    if json_out:
        print_json(views)
    else:
        columns = ["name", "project", "network", "node", "state", "step", "error"]
        print_rows("instances", columns, views)


@app.command("show")
def show(
    ctx: typer.Context,
    name: str,
    project: str | None = PROJECT_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Show an instance and its step history.  Example: metalnet instance show web1 -p acme"""
    view = state(ctx).service.get_instance(name, project)
    if json_out:
        print_json(view)
        return
    print_fields(view, skip=("history",))
    print_rows("history", ["at", "step", "message", "seconds"], view.history)
