"""`metalnet serve`: the controller (agent endpoint + REST API + lifecycle worker)."""

from __future__ import annotations

from pathlib import Path

import typer

from metalnet.cli.common import state
from metalnet.errors import InputError


def serve(
    ctx: typer.Context,
    listen: str | None = typer.Option(
        None, help="HOST:PORT for the agent endpoint (default: controller_listen)."
    ),
    workers: int = typer.Option(
        1, min=1, max=64, help="Processes answering HTTP (more than 1 needs PostgreSQL)."
    ),
    tls_cert: str | None = typer.Option(
        None, help="PEM certificate (chain) file: serve HTTPS (needs --tls-key)."
    ),
    tls_key: str | None = typer.Option(None, help="PEM private key file of --tls-cert."),
) -> None:
    """Run the controller until SIGINT/SIGTERM; resumes unfinished lifecycles on start.

    Example: metalnet --config /etc/metalnet.toml serve --listen 10.99.0.1:8470 --workers 4
    --tls-cert /etc/metalnet/tls.crt --tls-key /etc/metalnet/tls.key
    """
    import logging
    import signal
    import threading
    from contextlib import ExitStack

    from metalnet.api.workers import (
        freeze_heap,
        listening_socket,
        start_api_processes,
        stop_api_processes,
    )
    from metalnet.controller import Controller
    from metalnet.validate import check_host_port

    tls = _tls(tls_cert, tls_key)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    db = state(ctx).database()
    host, port = check_host_port(listen or db.settings.controller_listen, "listen")
    sock = listening_socket(host, port)
    helpers = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        helpers = start_api_processes(db.settings, sock, workers - 1, tls)
        controller_cm = Controller(db, f"{host}:{port}", sock=sock, tls=tls)
        with controller_cm as controller, ExitStack() as dhcp:
            if db.settings.dhcp_configured:  # this host also serves the networks' DHCP
                from metalnet.dhcp.manager import DhcpManager

                dhcp.enter_context(DhcpManager(db))
            freeze_heap()
            where = f"{controller.scheme}://{controller.host}:{controller.port}"
            typer.echo(f"metalnet controller on {where} ({workers} processes)", err=True)
            stop.wait()
    finally:
        stop_api_processes(helpers)
        sock.close()


def _tls(cert: str | None, key: str | None) -> tuple[str, str] | None:
    """Both files or neither, each readable; checked before anything starts listening."""
    if (cert is None) != (key is None):
        raise InputError("--tls-cert and --tls-key go together: give both or neither")
    if cert is None or key is None:
        return None
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise InputError(f"{option} {path}: no such file")
    return cert, key
