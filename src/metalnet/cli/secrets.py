"""Reading passwords without putting them in shell history or process listings."""

from __future__ import annotations

import os

import typer

from metalnet.errors import InputError


def read_password(what: str, env_var: str | None, literal: str | None, prompt: bool) -> str | None:
    """From `--password-env VAR`, else `--password`, else a hidden prompt when asked to."""
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise InputError(f"environment variable {env_var!r} (for the {what}) is not set")
        return value
    if literal is not None:
        return literal
    if prompt:
        return typer.prompt(f"{what}", hide_input=True)
    return None
