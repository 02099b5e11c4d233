"""`metalnet project`: tenants."""

from __future__ import annotations

import typer

from metalnet.cli.common import JSON_OPTION, print_fields, print_json, print_table, say, state

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
