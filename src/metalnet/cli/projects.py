"""`metalnet project`: tenants."""

from __future__ import annotations

import typer

from metalnet.cli.common import (
    JSON_OPTION,
    audited,
    print_fields,
    print_json,
    print_table,
    say,
    state,
)

app = typer.Typer(help="Create, list, show and delete projects (tenants).", no_args_is_help=True)


@app.command("create")
def create(ctx: typer.Context, name: str, json_out: bool = JSON_OPTION) -> None:
    """Create a project.  Example: metalnet project create acme"""
    from metalnet.service.models import ProjectIn

    view = state(ctx).service.create_project(ProjectIn.of(name=name))
    print_json(view) if json_out else say(f"project {name} created")


@app.command("list")
def list_(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """List projects.  Example: metalnet project list --json"""
    views = state(ctx).service.list_projects()
    if json_out:
        print_json(views)
    else:
        print_table(
            "projects", ["name", "networks"], ((v.name, ", ".join(v.networks)) for v in views)
        )


@app.command("show")
def show(ctx: typer.Context, name: str, json_out: bool = JSON_OPTION) -> None:
    """Show one project.  Example: metalnet project show acme"""
    view = state(ctx).service.get_project(name)
    print_json(view) if json_out else print_fields(view)


@app.command("delete")
def delete(ctx: typer.Context, name: str) -> None:
    """Delete a project with no networks and no instances.  Example: metalnet project delete acme"""
    state(ctx).service.delete_project(name)
    say(f"project {name} deleted")


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
    from metalnet import inventory, quotas

    state(ctx).local_only("project quota")
    settings = state(ctx).settings
    with state(ctx).database().session() as session:
        project = inventory.get_project(session, name)
        view = quotas.quota_view(settings, quotas.set_quota(session, project, networks, instances))
    if json_out:
        print_json(view)
        return
    say(
        f"project {name}: {view['quota_networks']} networks ({view['quota_networks_source']}), "
        f"{view['quota_instances']} instances ({view['quota_instances_source']})"
    )
