"""What every command shares: settings, the service and the database from the global
options, and the one way user data reaches the terminal.

Errors a user can cause are MetalnetErrors; `MetalnetGroup` turns them into one line
on stderr and the error's exit code, so no command prints a traceback for bad input.
This module imports nothing heavy: `metalnet --help` must answer at once.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from metalnet.errors import InputError, MetalnetError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from metalnet.config import Settings
    from metalnet.db.engine import Database
    from metalnet.service.base import Service

F = TypeVar("F", bound=Callable[..., Any])
console = Console(highlight=False)

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
    _service: Service | None = field(default=None, repr=False)
    _db: Database | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from metalnet.config import load_settings

            self._settings = load_settings(self.config_path, self.database_url)
        return self._settings

    @property
    def service(self) -> Service:
        """The service: over the REST API with `--url`, else over the local database
        as an admin named after the local user."""
        if self._service is None:
            if self.url:
                from metalnet.service.http import HttpService

                self._service = HttpService(
                    self.url, os.environ.get("METALNET_TOKEN"), self.ca_file
                )
            else:
                from metalnet.audit import cli_actor
                from metalnet.service.base import Principal
                from metalnet.service.local import LocalService

                self._service = LocalService(self.database(), Principal(cli_actor(), None))
        return self._service

    def local_only(self, command: str) -> None:
        """Refuse, in one line, a command the REST API does not offer."""
        if self.url:
            raise InputError(f"`metalnet {command}` works on the local database only, not --url")

    def database(self, check: bool = True) -> Database:
        """The database; unless `check` is False, refused when not migrated."""
        from metalnet.db.engine import Database, ensure_ready

        if self._db is None:
            self._db = Database(self.settings)
        if check:
            ensure_ready(self._db.engine, self.settings)
        return self._db

    def close(self) -> None:
        """Close the database connections, so an embedded SQLite file is checkpointed
        (its WAL merged back) when the command ends, whatever the process does next."""
        if self._db is not None:
            self._db.engine.dispose()


def state(ctx: typer.Context) -> AppState:
    """The AppState the top-level callback stored."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


# Output: user data is always plain text, never terminal markup -------------------------


def plain(value: object) -> Text:
    """A value as literal text: `[/oops]` in an image URL prints as itself."""
    return Text("-" if value is None else str(value))


def say(line: object) -> None:
    """One line to stdout, shown literally."""
    console.print(plain(line), soft_wrap=True)


def jsonable(data: object) -> object:
    """Read models (and lists of them) as JSON-ready data."""
    if isinstance(data, list):
        return [jsonable(item) for item in data]
    dump = getattr(data, "model_dump", None)
    return dump(mode="json") if dump else data


def print_json(data: object) -> None:
    """JSON to stdout, for scripts."""
    typer.echo(json.dumps(jsonable(data), indent=2, sort_keys=True, default=str))


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A rich table to stdout; None shows as a dash; every cell literal text."""
    table = Table(title=plain(title) if title else None, title_justify="left")
    for column in columns:
        table.add_column(plain(column))
    for row in rows:
        table.add_row(*(plain(v) for v in row))
    console.print(table)


def print_rows(title: str, columns: Sequence[str], views: Iterable[BaseModel]) -> None:
    """A table of read models, one column per named field."""
    dumps = (jsonable(view) for view in views)
    print_table(title, columns, ([d[c] for c in columns] for d in dumps))


def print_fields(view: BaseModel | dict[str, object], skip: Sequence[str] = ()) -> None:
    """A two-column key/value table for `show` commands."""
    data = jsonable(view)
    print_table("", ["field", "value"], ((k, v) for k, v in data.items() if k not in skip))


def audited(
    action: str, target: Callable[[dict[str, Any]], str] = lambda kw: str(kw.get("name", ""))
) -> Callable[[F], F]:
    """Decorate a command that changes something outside the service layer (a switch
    port, a reconciliation): its outcome goes to the audit log. Service operations are
    audited by the service itself."""

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
    from metalnet import audit

    try:
        db = state(ctx).database(check=False)
    except MetalnetError:
        return  # bad configuration: there is no database to record into
    audit.record(db, audit.cli_actor(), action, target, ok, detail)
