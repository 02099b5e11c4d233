"""`metalnet dhcp-agent`: the DHCP manager alone, on a host that sits on the VLANs.

The controller (`metalnet serve`) may run elsewhere; the agent needs only the
database and the configuration's DHCP keys. Heavy imports stay inside the command.
"""

from __future__ import annotations

import logging
import signal
import threading

import typer

from metalnet.cli.common import print_table, state
from metalnet.errors import ConfigError


def dhcp_agent(
    ctx: typer.Context,
    check: bool = typer.Option(
        False, "--check", help="Show which networks need DHCP and where; exit 1 on a problem."
    ),
    metrics: str | None = typer.Option(
        None, help="HOST:PORT to serve Prometheus metrics on (e.g. 127.0.0.1:9470)."
    ),
) -> None:
    """Run one dnsmasq per network that needs DHCP, following the database, until
    SIGINT/SIGTERM. Interfaces come from dhcp_interface / dhcp_interfaces.

    Example: metalnet --config /etc/metalnet/metalnet.toml dhcp-agent
    """
    app_state = state(ctx)
    app_state.local_only("dhcp-agent")
    if not app_state.settings.dhcp_configured:
        raise ConfigError(
            "config keys dhcp_interface and dhcp_interfaces are both unset: "
            "this host does not know which interface serves which VLAN"
        )
    from metalnet.dhcp.manager import DhcpManager
    from metalnet.validate import check_listen

    metrics_at = check_listen(metrics) if metrics else None
    manager = DhcpManager(app_state.database())
    if check:
        checks = manager.check()
        rows = [
            (c.vlan, c.name, c.interface, c.reservations, "not served" if c.problem else "ok")
            for c in checks
        ]
        print_table(
            "networks needing DHCP", ["vlan", "network", "interface", "hosts", "status"], rows
        )
        for problem in [c.problem for c in checks if c.problem]:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1 if any(c.problem for c in checks) else 0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if metrics_at:
        from prometheus_client import start_http_server

        from metalnet.metrics import REGISTRY

        start_http_server(metrics_at[1], metrics_at[0], registry=REGISTRY)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with manager:
        typer.echo(f"metalnet DHCP agent: state in {manager.state_dir}", err=True)
        stop.wait()
