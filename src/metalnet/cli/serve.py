"""`metalnet serve`: the controller (agent endpoint + REST API + lifecycle worker)."""

from __future__ import annotations

import typer

from metalnet.cli.common import state


def serve(
    ctx: typer.Context,
    listen: str | None = typer.Option(
        None, help="HOST:PORT for the agent endpoint (default: controller_listen)."
    ),
    workers: int = typer.Option(
        1, min=1, max=64, help="Processes answering HTTP (more than 1 needs PostgreSQL)."
    ),
) -> None:
    """Run the controller until SIGINT/SIGTERM; resumes unfinished lifecycles on start.

    Example: metalnet --config /etc/metalnet.toml serve --listen 10.99.0.1:8470 --workers 4
    """
    import logging
    import signal
    import threading
    from contextlib import ExitStack

    from metalnet.api.workers import listening_socket, start_api_processes, stop_api_processes
    from metalnet.controller import Controller
    from metalnet.validate import check_host_port

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    db = state(ctx).database()
    host, port = check_host_port(listen or db.settings.controller_listen, "listen")
    sock = listening_socket(host, port)
    helpers = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        helpers = start_api_processes(db.settings, sock, workers - 1)
        with Controller(db, f"{host}:{port}", sock=sock) as controller, ExitStack() as dhcp:
            if db.settings.dhcp_configured:  # this host also serves the networks' DHCP
                from metalnet.dhcp.manager import DhcpManager

                dhcp.enter_context(DhcpManager(db))
            where = f"http://{controller.host}:{controller.port}"
            typer.echo(f"metalnet controller on {where} ({workers} processes)", err=True)
            stop.wait()
    finally:
        stop_api_processes(helpers)
        sock.close()
