"""`metalnet instance`: spawn and terminate tenants' servers."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import typer
from sqlalchemy import select

from metalnet.cli.common import (
    JSON_OPTION,
    audited,
    console,
    print_fields,
    print_json,
    print_table,
    state,
)
from metalnet.db.models import Instance
from metalnet.errors import InputError, MetalnetError
from metalnet.lifecycle import instances
from metalnet.views import instance_view

app = typer.Typer(
    help="Spawn (create) and terminate (delete) instances; `metalnet serve` carries them out.",
    no_args_is_help=True,
)

WAIT_OPTION = typer.Option(False, "--wait", help="Follow the lifecycle step by step until it ends.")


class LifecycleFailed(MetalnetError):
    """The instance ended in the error state."""


def _fetch(ctx: typer.Context, name: str) -> dict[str, Any]:
    """The instance with its step history, from the server or the local database."""
    if api := state(ctx).remote:
        return api.call("GET", f"/v1/instances/{quote(name)}")
    with state(ctx).database().session() as session:
        return instance_view(instances.get_instance(session, name), history=True)


def _wait(ctx: typer.Context, name: str, final: tuple[str, ...], timeout: float) -> dict[str, Any]:
    """Print each step as it starts and ends; return the instance's final view."""
    seen = 0
    deadline = time.monotonic() + timeout
    while True:
        view = _fetch(ctx, name)
        for event in view["history"][seen:]:
            took = f" ({event['seconds']:.2f}s)" if event["seconds"] is not None else ""
            console.print(f"  {event['step']:<16} {event['message']}{took}")
        seen = len(view["history"])
        if view["state"] in final:
            return view
        if time.monotonic() > deadline:
            raise LifecycleFailed(
                f"instance {name!r} still at step {view['step']} after {timeout:.0f}s"
            )
        time.sleep(0.2)


@app.command("create")
@audited("instance create")
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
    timeout: float = typer.Option(1800, help="Seconds --wait waits."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Spawn an instance on a node: service VLAN, PXE, deploy, boot disk, project VLAN.

    Example: metalnet instance create web1 -p acme --network web --any
    --image http://images/ubuntu.img --sha256 <64 hex> --wait
    """
    if bool(node) == any_node:
        raise InputError("give exactly one of --node NAME or --any")
    if api := state(ctx).remote:
        body = {
            "name": name,
            "project": project,
            "network": network,
            "node": node,
            "image_url": image,
            "sha256": sha256,
        }
        view = api.call("POST", "/v1/instances", body)
    else:
        db = state(ctx).database()
        with db.session() as session:
            inst = instances.create_instance(
                session, name, project, network, node, image, sha256, settings=db.settings
            )
            session.flush()
            view = instance_view(inst)
    if wait:
        view = _wait(ctx, name, ("active", "error"), timeout)
    if json_out:
        print_json(view)
    else:
        typer.echo(f"instance {name} on node {view['node']}: {view['state']} ({view['step']})")
    if view["state"] == "error":
        raise LifecycleFailed(f"instance {name!r}: {view['error']}")


@app.command("delete")
@audited("instance delete")
def delete(
    ctx: typer.Context,
    name: str,
    wait: bool = WAIT_OPTION,
    timeout: float = typer.Option(1800, help="Seconds --wait waits."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Terminate: port to service VLAN, PXE, erase and verify the disk, power off.

    Example: metalnet instance delete web1 --wait
    """
    if api := state(ctx).remote:
        view = api.call("DELETE", f"/v1/instances/{quote(name)}")
    else:
        with state(ctx).database().session() as session:
            view = instance_view(instances.delete_instance(session, name))
    if wait:
        view = _wait(ctx, name, ("deleted", "error"), timeout)
    if json_out:
        print_json(view)
    else:
        typer.echo(f"instance {name}: {view['state']} ({view['step']})")
    if view["state"] == "error":
        raise LifecycleFailed(f"instance {name!r}: {view['error']}")


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Include deleted instances."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List instances with their state and current step.  Example: metalnet instance list"""
    if api := state(ctx).remote:
        views = api.call("GET", f"/v1/instances?all={str(all_).lower()}")
    else:
        query = select(Instance).order_by(Instance.id)
        if not all_:
            query = query.where(Instance.state.in_(instances.LIVE))
        with state(ctx).database().session() as session:
            views = [instance_view(i) for i in session.scalars(query)]
    if json_out:
        print_json(views)
        return
    columns = ["name", "project", "network", "node", "state", "step", "error"]
    print_table("instances", columns, ([v[c] for c in columns] for v in views))


@app.command("show")
def show(ctx: typer.Context, name: str, json_out: bool = JSON_OPTION) -> None:
    """Show an instance and its step history.  Example: metalnet instance show web1"""
    view = _fetch(ctx, name)
    if json_out:
        print_json(view)
        return
    print_fields(view, skip=("history",))
    rows = ((e["at"], e["step"], e["message"], e["seconds"]) for e in view["history"])
    print_table("history", ["at", "step", "message", "seconds"], rows)
