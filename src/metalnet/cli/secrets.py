"""Secrets on the command line: reading passwords without putting them in shell history
or process listings, and `metalnet secrets rotate` for the keys they are stored under."""

from __future__ import annotations

import os

import typer

from metalnet.cli.common import audited, state
from metalnet.errors import InputError

app = typer.Typer(help="Manage the keys stored secrets are encrypted with.", no_args_is_help=True)


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


@app.command("rotate")
@audited("secrets rotate", lambda kw: "stored secrets")
def rotate(ctx: typer.Context) -> None:
    """Encrypt every stored secret under a new key; the old keys stay and still decrypt.

    With a key file a fresh key is added first in it; with METALNET_SECRET_KEY, put the
    new key first there (NEW,OLD) and run this to re-encrypt under it.
    Example: metalnet secrets rotate
    """
    from metalnet.secrets import keyring_of, reencrypt_all

    state(ctx).local_only("secrets rotate")
    db = state(ctx).database()
    keyring = keyring_of(db.engine.dialect)
    if not keyring.from_env:
        keyring.add_new_key()
    count = reencrypt_all(db.engine)
    typer.echo(f"{count} secret(s) re-encrypted under the newest key (keys in {keyring.source})")
