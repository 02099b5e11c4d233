"""`metalnet boot-server`: keeps the service network's dnsmasq matching the database.

Each pass renders the configuration (metalnet.boot.service), has `dnsmasq --test`
check it, and (re)starts dnsmasq when the text changed or dnsmasq died: dnsmasq
reads `dhcp-host` lines only at start, and its lease file carries over a restart.
A configuration dnsmasq refuses is logged and the running server is kept.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from pathlib import Path

from metalnet.boot.service import service_network
from metalnet.db.engine import Database
from metalnet.dhcp import DnsmasqError, check_config, find_dnsmasq, render_dnsmasq

log = logging.getLogger(__name__)
STOP_TIMEOUT_SECONDS = 10


class BootServer:
    """One dnsmasq for the service network; call `sync()` or `run(stop)`."""

    def __init__(self, db: Database, state_dir: Path) -> None:
        self.db = db
        self.state_dir = state_dir
        self.conf = state_dir / "dnsmasq.conf"
        self.process: subprocess.Popen[bytes] | None = None

    def render(self) -> str:
        """The configuration the database asks for now."""
        with self.db.session() as session:
            return render_dnsmasq(service_network(session, self.db.settings, self.state_dir))

    def sync(self) -> None:
        """Make the running dnsmasq serve the current configuration, once."""
        text = self.render()
        changed = not self.conf.exists() or self.conf.read_text() != text
        if not changed and self.process is not None and self.process.poll() is None:
            return
        try:
            check_config(text)
        except DnsmasqError as exc:
            log.error("boot server: keeping the running configuration: %s", exc)
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(text)
        self.stop()
        log.info("boot server: starting dnsmasq with %s", self.conf)
        binary = find_dnsmasq() or "dnsmasq"  # check_config has found it
        argv = [binary, "--keep-in-foreground", f"--conf-file={self.conf}", "--pid-file="]
        self.process = subprocess.Popen(argv)

    def run(self, stop: threading.Event, interval: float) -> None:
        """Sync every `interval` seconds until `stop` is set; then stop dnsmasq."""
        try:
            while True:
                self.sync()
                if stop.wait(interval):
                    return
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop dnsmasq (SIGTERM, then SIGKILL); its files and leases stay."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_SECONDS)
        self.process = None
