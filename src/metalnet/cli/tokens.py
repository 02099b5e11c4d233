"""`metalnet token` and `metalnet audit`: who may use the REST API, and what was done."""

from __future__ import annotations

import typer

from metalnet.cli.common import JSON_OPTION, print_json, print_rows, say, state
from metalnet.errors import InputError

app = typer.Typer(help="Create, list and revoke REST API tokens.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    admin: bool = typer.Option(False, "--admin", help="Token for everything."),
    project: str | None = typer.Option(None, "--project", help="Token for one project only."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Create a token; it is printed once and stored only hashed.

    Example: export METALNET_TOKEN=$(metalnet token create ci --project acme)
    """
    from metalnet.service.models import TokenIn

    if admin == bool(project):
        raise InputError("give exactly one of --admin or --project NAME")
    made = state(ctx).service.create_token(TokenIn.of(name=name, project=project))
    print_json(made) if json_out else say(made.token)


@app.command("list")
def list_(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """List tokens (never their secrets).  Example: metalnet token list"""
    views = state(ctx).service.list_tokens()
    if json_out:
        print_json(views)
    else:
        columns = ["id", "name", "role", "project", "created_at", "revoked_at"]
        print_rows("API tokens", columns, views)


@app.command("revoke")
def revoke(ctx: typer.Context, token_id: str = typer.Argument(..., help="Token id.")) -> None:
    """Revoke a token; servers refuse it within a second.  Example: metalnet token revoke 3"""
    state(ctx).service.revoke_token(token_id)
    say(f"token {token_id} revoked")


def audit_command(
    ctx: typer.Context,
    limit: int = typer.Option(100, help="Newest N entries (1 to 1000)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Show the audit log: every change through the CLI or API, by whom, with its result.

    Example: metalnet audit --limit 20 --json
    """
    views = state(ctx).service.audit_log(limit)
    if json_out:
        print_json(views)
    else:
        print_rows("audit log", ["at", "actor", "action", "target", "ok", "detail"], views)
