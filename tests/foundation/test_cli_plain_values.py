"""Values with nothing to convert skip typer's coercion, and nothing else changes.

`metalnet.cli.main.PlainValue` takes a None nobody gave and a command-line string for
a `str` parameter as they are, instead of building a pydantic adapter for them. The
model is typer itself: for any command line, a command whose parameters are
PlainValues ends exactly as the same command as typer builds it (same values, or the
same error), including required values missing, numbers to convert and bad numbers.
"""

from __future__ import annotations

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st

from metalnet.cli.main import PlainArgument, PlainOption, take_plain_values


def example() -> typer.Typer:
    """One command with each kind of parameter the metalnet commands use."""
    app = typer.Typer(add_completion=False)

    @app.command()
    def show(
        name: str,
        target: str | None = typer.Argument(None),
        text: str | None = typer.Option(None, "--text"),
        needed: str = typer.Option(..., "--needed"),
        count: int = typer.Option(1, "--count"),
        limit: int | None = typer.Option(None, "--limit"),
        flag: bool = typer.Option(False, "--flag"),
    ) -> tuple:
        return (name, target, text, needed, count, limit, flag)

    return app


def outcome(command: typer.core.TyperCommand, argv: list[str]) -> tuple:
    """What the command returned, or the error it ended with (type and message)."""
    try:
        return ("ok", command.main(argv, prog_name="show", standalone_mode=False))
    except typer.Exit as exc:
        return ("exit", exc.exit_code)
    except Exception as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return (type(exc).__name__, message)


def commands() -> tuple[typer.core.TyperCommand, typer.core.TyperCommand]:
    """The command as typer builds it, and the same command with PlainValues."""
    stock = typer.main.get_command(example())
    plain = typer.main.get_command(example())
    take_plain_values(plain, typer.Context(plain))
    return stock, plain


def test_every_parameter_and_help_become_plain_values() -> None:
    _, plain = commands()
    params = plain.get_params(typer.Context(plain))
    assert {type(p) for p in params} == {PlainArgument, PlainOption}
    assert "help" in {p.name for p in params}


TOKENS = st.one_of(
    st.sampled_from(["--text", "--needed", "--count", "--limit", "--flag", "--", "-", "--help"]),
    st.sampled_from(["7", "-3", "x", "1e3", " 5 ", "", "ünïcode", "[red]x[/red]"]),
    st.text(max_size=12),
)


@given(argv=st.lists(TOKENS, max_size=8))
@settings(max_examples=300, deadline=None)
def test_plain_values_end_as_typer_would(argv: list[str]) -> None:
    stock, plain = commands()
    assert outcome(plain, argv) == outcome(stock, argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["n", "--needed", "v"],
        ["n", "t", "--needed", "v", "--text", "", "--count", "3", "--limit", "9", "--flag"],
        ["--needed", "v"],
        ["n"],
        ["n", "--needed", "v", "--count", "three"],
        ["n", "--needed", "v", "--limit", "1.5"],
    ],
)
def test_known_command_lines(argv: list[str]) -> None:
    """The cases the property must cover whatever hypothesis draws: values, a missing
    argument, a missing required option, numbers that are not."""
    stock, plain = commands()
    assert outcome(plain, argv) == outcome(stock, argv)
