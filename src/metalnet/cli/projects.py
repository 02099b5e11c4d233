"""`metalnet project`: tenants."""

from __future__ import annotations

from urllib.parse import quote

import typer
from sqlalchemy import select

from metalnet import inventory
from metalnet.cli.common import JSON_OPTION, audited, print_fields, print_json, print_table, state
from metalnet.db.models import Project
from metalnet.views import project_view

app = typer.Typer(help="Create, list, show and delete projects (tenants).", no_args_is_help=True)


@app.command("create")
@audited("project create")
def create(ctx: typer.Context, name: str, json_out: bool = JSON_OPTION) -> None:
    """Create a project.  Example: metalnet project create acme"""
    if api := state(ctx).remote:
        view = api.call("POST", "/v1/projects", {"name": name})
    else:
        with state(ctx).database().session() as session:
            view = project_view(inventory.create_project(session, name))
    print_json(view) if json_out else typer.echo(f"project {name} created")


@app.command("list")
def list_(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """List projects.  Example: metalnet project list --json"""
    if api := state(ctx).remote:
        views = api.call("GET", "/v1/projects")
    else:
        with state(ctx).database().session() as session:
            query = select(Project).order_by(Project.name)
            views = [project_view(p) for p in session.scalars(query)]
    if json_out:
        print_json(views)
    else:
        print_table(
            "projects", ["name", "networks"], ((v["name"], ", ".join(v["networks"])) for v in views)
        )


@app.command("show")
def show(ctx: typer.Context, name: str, json_out: bool = JSON_OPTION) -> None:
    """Show one project.  Example: metalnet project show acme"""
    if api := state(ctx).remote:
        view = api.call("GET", f"/v1/projects/{quote(name)}")
    else:
        with state(ctx).database().session() as session:
            view = project_view(inventory.get_project(session, name))
    print_json(view) if json_out else print_fields(view)


@app.command("delete")
@audited("project delete")
def delete(ctx: typer.Context, name: str) -> None:
    """Delete a project with no networks and no instances.  Example: metalnet project delete acme"""
    if api := state(ctx).remote:
        api.call("DELETE", f"/v1/projects/{quote(name)}")
    else:
        with state(ctx).database().session() as session:
            inventory.delete_project(session, name)
    typer.echo(f"project {name} deleted")


@app.command("quota")
@audited(
    "project quota",
    lambda kw: f"{kw['name']} networks={kw['networks']} instances={kw['instances']}",
)
def quota(
    ctx: typer.Context,
    name: str,
    networks: int | None = typer.Option(None, help="Most networks the project may hold."),
    instances: int | None = typer.Option(None, help="Most live instances the project may hold."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Show, or (admin) set, a project's quotas; unset ones follow the configuration.

    Example: metalnet project quota acme --networks 4 --instances 20
    """
    from metalnet import quotas

    state(ctx).local_only("project quota")
    settings = state(ctx).settings
    with state(ctx).database().session() as session:
        project = inventory.get_project(session, name)
        view = quotas.quota_view(settings, quotas.set_quota(session, project, networks, instances))
    if json_out:
        print_json(view)
        return
    typer.echo(
        f"project {name}: {view['quota_networks']} networks ({view['quota_networks_source']}), "
        f"{view['quota_instances']} instances ({view['quota_instances_source']})"
    )
