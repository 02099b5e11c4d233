"""`metalnet token` and `metalnet audit`: who may use the REST API, and what was done."""

from __future__ import annotations

import typer
from sqlalchemy import select

from metalnet import apitokens
from metalnet.cli.common import JSON_OPTION, audited, print_json, print_table, state
from metalnet.db.models import ApiToken, AuditEntry
from metalnet.errors import InputError
from metalnet.views import audit_view

app = typer.Typer(help="Create, list and revoke REST API tokens.", no_args_is_help=True)


@app.command("create")
@audited("token create", lambda kw: f"{kw['name']} ({kw['project'] or 'admin'})")
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
    state(ctx).local_only("token create")
    if admin == bool(project):
        raise InputError("give exactly one of --admin or --project NAME")
    with state(ctx).database().session() as session:
        row, secret = apitokens.create(session, name, project)
        view = apitokens.token_view(row)
    print_json({**view, "token": secret}) if json_out else typer.echo(secret)


@app.command("list")
def list_(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """List tokens (never their secrets).  Example: metalnet token list"""
    state(ctx).local_only("token list")
    with state(ctx).database().session() as session:
        views = [
            apitokens.token_view(t) for t in session.scalars(select(ApiToken).order_by(ApiToken.id))
        ]
    if json_out:
        print_json(views)
        return
    columns = ["id", "name", "role", "project", "created_at", "revoked_at"]
    print_table("API tokens", columns, ([v[c] for c in columns] for v in views))


@app.command("revoke")
@audited("token revoke", lambda kw: str(kw["token_id"]))
def revoke(ctx: typer.Context, token_id: str = typer.Argument(..., help="Token id.")) -> None:
    """Revoke a token; it stops working at once.  Example: metalnet token revoke 3"""
    state(ctx).local_only("token revoke")
    with state(ctx).database().session() as session:
        apitokens.revoke(session, token_id)
    typer.echo(f"token {token_id} revoked")


def audit_command(
    ctx: typer.Context,
    limit: int = typer.Option(100, help="Newest N entries."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Show the audit log: every change through the CLI or API, by whom, with its result.

    Example: metalnet audit --limit 20 --json
    """
    if api := state(ctx).remote:
        views = api.call("GET", f"/v1/audit?limit={limit}")
    else:
        views = _audit_views(ctx, limit)
    if json_out:
        print_json(views)
        return
    columns = ["at", "actor", "action", "target", "ok", "detail"]
    print_table("audit log", columns, ([v[c] for c in columns] for v in views))


def _audit_views(ctx: typer.Context, limit: int) -> list[dict[str, object]]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    with state(ctx).database().session() as session:
        return [audit_view(e) for e in session.scalars(query)]
