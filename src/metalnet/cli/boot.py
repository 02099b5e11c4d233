"""`metalnet boot-server`: DHCP and TFTP for the service network (network boot)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import typer

from metalnet.cli.common import state


def boot_server(
    ctx: typer.Context,
    state_dir: Path = typer.Option(
        Path("/var/lib/metalnet/boot"), help="Where dnsmasq's configuration, leases and log go."
    ),
    interval: float = typer.Option(5.0, min=0.5, help="Seconds between database checks."),
    check: bool = typer.Option(
        False, "--check", help="Print the configuration after `dnsmasq --test`; start nothing."
    ),
) -> None:
    """Run dnsmasq for the service network until SIGINT/SIGTERM (needs root).

    Reservations for every enrolled NIC, iPXE over TFTP for PXE firmware, and the
    controller's iPXE script for iPXE. Settings: service_interface, service_cidr,
    boot_server (and agent_url, the controller URL nodes reach).
    Example: metalnet --config /etc/metalnet.toml boot-server
    """
    from metalnet.boot.server import BootServer
    from metalnet.dhcp import DnsmasqError, check_config
    from metalnet.errors import ConfigError

    server = BootServer(state(ctx).database(), state_dir)
    if check:
        text = server.render()
        try:
            check_config(text)
        except DnsmasqError as exc:
            raise ConfigError(str(exc)) from None
        typer.echo(text, nl=False)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.run(stop, interval)
