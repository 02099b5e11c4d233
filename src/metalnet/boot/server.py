"""`metalnet boot-server`: keeps the service network's dnsmasq matching the database.

The service network's dnsmasq is run the way every project network's is, by
`metalnet.dhcp.server.DnsmasqServer`: its files in one directory, readiness read
from its log, reservations in a hosts file that a SIGHUP re-reads, so a node
enrolled later is served without a restart and the other clients keep their leases.

Each pass renders the configuration (metalnet.boot.service) and, when the
reservations changed or dnsmasq is not running, has `dnsmasq --test` check it
first: a configuration dnsmasq refuses is logged and the running server is kept.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

from metalnet.boot.service import service_network
from metalnet.db.engine import Database
from metalnet.dhcp import DhcpNetwork, DnsmasqError, check_config, render_dnsmasq
from metalnet.dhcp.interfaces import DhcpHostError, DhcpInterfaces
from metalnet.dhcp.server import DnsmasqServer, ServerFiles, claim, kill_orphan

log = logging.getLogger(__name__)


class BootServer:
    """One dnsmasq for the service network; call `sync()` or `run(stop)`."""

    def __init__(self, db: Database, state_dir: Path) -> None:
        self.db = db
        self.files = ServerFiles(state_dir)
        self.dnsmasq: DnsmasqServer | None = None

    def network(self) -> DhcpNetwork:
        """The service network the database asks for now, with its files in the state dir."""
        with self.db.session() as session:
            network = service_network(session, self.db.settings, self.files.directory)
        return self.files.place(network)

    def render(self) -> str:
        """The configuration with the reservations inline: what `dnsmasq --test` checks
        and `boot-server --check` prints (the running dnsmasq reads them from its
        hosts file instead)."""
        return _self_contained(self.network())

    def sync(self) -> None:
        """Make the running dnsmasq serve the current reservations, once."""
        network = self.network()
        live = self.dnsmasq if self.dnsmasq is not None and self.dnsmasq.alive() else None
        if live is not None and live.network.hosts == network.hosts:
            return
        try:
            check_config(_self_contained(network))
        except DnsmasqError as exc:
            log.error("boot server: keeping the running configuration: %s", exc)
            return
        if live is not None:
            try:
                live.reload(network)
            except DhcpHostError as exc:  # it died meanwhile: the next pass restarts it
                log.error("boot server: dnsmasq did not reload: %s", exc)
                return
            log.info("boot server: %d reservations, reloaded", len(network.hosts))
            return
        if self.dnsmasq is not None:
            log.warning("boot server: dnsmasq %s exited, restarting it", self.dnsmasq.pid)
        self._start(network)

    def _start(self, network: DhcpNetwork) -> None:
        """(Re)start dnsmasq, after stopping one a killed boot server left behind."""
        self.stop()
        self.dnsmasq = None
        kill_orphan(self.files)
        server = DnsmasqServer(network, self.files, DhcpInterfaces())
        try:
            server.start()
        except DhcpHostError as exc:
            log.error("boot server: dnsmasq did not start: %s", exc)
            return
        self.dnsmasq = server
        log.info(
            "boot server: dnsmasq %d serving %d reservations on %s",
            server.pid,
            len(network.hosts),
            network.interface,
        )

    def run(self, stop: threading.Event, interval: float) -> None:
        """Sync every `interval` seconds until `stop` is set; then stop dnsmasq.

        The state directory is locked meanwhile: a second boot server on it would
        stop this one's dnsmasq as an orphan."""
        with claim(self.files.directory, "boot server"):
            try:
                while True:
                    self.sync()
                    if stop.wait(interval):
                        return
            finally:
                self.stop()

    def stop(self) -> None:
        """Stop dnsmasq (SIGTERM, then SIGKILL); its files and leases stay."""
        if self.dnsmasq is not None:
            self.dnsmasq.stop()


def _self_contained(network: DhcpNetwork) -> str:
    return render_dnsmasq(dataclasses.replace(network, hosts_file=None))
