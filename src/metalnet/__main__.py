"""`python -m metalnet` is the `metalnet` command (the lab starts agents this way)."""

from metalnet.cli.main import run

run()
