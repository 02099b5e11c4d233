"""`metalnet db`: schema management."""

from __future__ import annotations

import typer

from metalnet.cli.common import state

app = typer.Typer(help="Create or upgrade the database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(ctx: typer.Context) -> None:
    """Create or upgrade the schema to this release; safe to run again.

    Example: metalnet --db postgresql://metalnet@db/metalnet db upgrade
    """
    from metalnet.db.engine import upgrade

    state(ctx).local_only("db upgrade")
    db = state(ctx).database(check=False)
    before, after = upgrade(db.engine)
    if before == after:
        typer.echo(f"database already at revision {after}")
    else:
        typer.echo(f"database upgraded from {before or 'empty'} to revision {after}")
