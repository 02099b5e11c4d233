"""`python -m metalnet` is the `metalnet` command (the lab starts agents this way)."""

from metalnet.cli.main import app

app(prog_name="metalnet")
