"""What every command shares: settings and database from the global options, output.

Errors a user can cause are MetalnetErrors; `MetalnetGroup` turns them into one line
on stderr and the error's exit code, so no command prints a traceback for bad input.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from metalnet import audit
from metalnet.cli.remote import Remote
from metalnet.config import Settings, load_settings
from metalnet.db.engine import Database, ensure_ready
from metalnet.errors import InputError, MetalnetError

F = TypeVar("F", bound=Callable[..., Any])
console = Console()
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON (stable keys) instead of a table.")


class MetalnetGroup(TyperGroup):
    """Top-level group converting MetalnetErrors raised anywhere below it."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except MetalnetError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None


@dataclass
class AppState:
    """Global options, resolved lazily so `--help` never touches a database."""

    config_path: str | None = None
    database_url: str | None = None
    url: str | None = None
    ca_file: str | None = None
    _settings: Settings | None = field(default=None, repr=False)
    _remote: Remote | None = field(default=None, repr=False)
    _db: Database | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path, self.database_url)
        return self._settings

    @property
    def remote(self) -> Remote | None:
        """The API client when the CLI works against a remote server (`--url`)."""
        if self.url and self._remote is None:
            self._remote = Remote(self.url, os.environ.get("METALNET_TOKEN"), self.ca_file)
        return self._remote

    def local_only(self, command: str) -> None:
        """Refuse, in one line, a command the REST API does not offer."""
        if self.url:
            raise InputError(f"`metalnet {command}` works on the local database only, not --url")

    def database(self, check: bool = True) -> Database:
        """The database; unless `check` is False, refused when not migrated."""
        if self._db is None:
            self._db = Database(self.settings)
        if check:
            ensure_ready(self._db.engine, self.settings)
        return self._db


def state(ctx: typer.Context) -> AppState:
    """The AppState the top-level callback stored."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


def print_json(data: object) -> None:
    """JSON to stdout, for scripts."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A rich table to stdout; None shows as a dash."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    console.print(table)


def print_fields(data: dict[str, object], skip: Sequence[str] = ()) -> None:
    """A two-column key/value table for `show` commands."""
    print_table("", ["field", "value"], ((k, v) for k, v in data.items() if k not in skip))


def audited(
    action: str, target: Callable[[dict[str, Any]], str] = lambda kw: str(kw.get("name", ""))
) -> Callable[[F], F]:
    """Decorate a command that changes something: its outcome goes to the audit log."""

    def wrap(command: F) -> F:
        @functools.wraps(command)
        def run(ctx: typer.Context, *args: Any, **kwargs: Any) -> Any:
            what = target(kwargs)
            try:
                result = command(ctx, *args, **kwargs)
            except typer.Exit as exc:
                _audit(ctx, action, what, exc.exit_code == 0, f"exit {exc.exit_code}")
                raise
            except Exception as exc:
                _audit(ctx, action, what, False, str(exc))
                raise
            _audit(ctx, action, what, True)
            return result

        return run  # type: ignore[return-value]

    return wrap


def _audit(ctx: typer.Context, action: str, target: str, ok: bool, detail: str = "") -> None:
    if state(ctx).url:
        return  # the server audits what its API is asked to do
    try:
        db = state(ctx).database(check=False)
    except MetalnetError:
        return  # bad configuration: there is no database to record into
    audit.record(db, audit.cli_actor(), action, target, ok, detail)
