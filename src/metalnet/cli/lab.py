"""`metalnet lab up|down`: a simulated lab with a running controller, to try metalnet by hand."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

app = typer.Typer(
    help="A simulated lab (switches, BMCs, nodes) with a running controller.",
    no_args_is_help=True,
)

DIR_OPTION = typer.Option(..., "--dir", help="The lab's directory (database, logs, lab.json).")


@app.command("up")
def up(
    directory: Path = DIR_OPTION,
    nodes: int = typer.Option(4, min=1, max=48, help="Number of simulated nodes."),
    switches: int = typer.Option(1, min=1, max=8, help="Number of simulated Junos switches."),
    commit_latency: float = typer.Option(
        0.3, min=0.0, help="Seconds each simulated switch commit takes."
    ),
) -> None:
    """Run a lab until SIGINT/SIGTERM; DIR/lab.json says where everything is once it is up.

    Switches and nodes are registered; create projects, networks and tokens with the
    CLI (METALNET_DATABASE_URL from lab.json). Example: metalnet lab up --dir /tmp/lab
    """
    from metalnet.sim.lab import up as lab_up

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    # Polling the lab's own controller while it starts is expected, not worth a warning.
    logging.getLogger("metalnet.retry").setLevel(logging.ERROR)
    lab_up.run(directory, nodes, switches, commit_latency)


@app.command("down")
def down(directory: Path = DIR_OPTION) -> None:
    """Stop the lab running in DIR and wait until it has exited.

    Example: metalnet lab down --dir /tmp/lab
    """
    from metalnet.sim.lab import up as lab_up

    pid = lab_up.down(directory)
    typer.echo(f"lab {pid} stopped")
