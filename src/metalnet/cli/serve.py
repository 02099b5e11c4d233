"""`metalnet serve`: the controller (agent endpoint + lifecycle worker)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

import typer

from metalnet.cli.common import state
from metalnet.controller import Controller


def serve(
    ctx: typer.Context,
    listen: str | None = typer.Option(
        None, help="HOST:PORT for the agent endpoint (default: controller_listen)."
    ),
) -> None:
    """Run the controller until SIGINT/SIGTERM; resumes unfinished lifecycles on start.

    Example: metalnet --config /etc/metalnet.toml serve --listen 10.99.0.1:8470
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    db = state(ctx).database()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Controller(db, listen) as controller, contextlib.ExitStack() as dhcp:
        if db.settings.dhcp_configured:  # this host also serves the networks' DHCP
            from metalnet.dhcp.manager import DhcpManager

            dhcp.enter_context(DhcpManager(db))
        typer.echo(f"metalnet controller on http://{controller.host}:{controller.port}", err=True)
        stop.wait()
