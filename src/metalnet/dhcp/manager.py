"""The DHCP manager: each network that needs DHCP has its dnsmasq, as the database says.

One pass (`sync`) reads the database and makes the host match it, the way
OpenStack Neutron's DHCP agent keeps one dnsmasq per network:

- a network with at least one live reservation gets a dnsmasq on its VLAN's
  interface (which must exist; the server address is put on it);
- changed reservations rewrite the hosts file and SIGHUP dnsmasq: no restart, the
  other clients keep their leases; a removed reservation's lease is released;
- a network that no longer needs DHCP (deleted, or its last instance gone) has its
  dnsmasq stopped, its directory deleted and its address taken off the interface;
- a dnsmasq that died is restarted (logged, counted in `metalnet_dhcp_server_restarts`),
  with back-off from `metalnet.retry` when it keeps dying.

`metalnet serve` runs it when the configuration names DHCP interfaces; `metalnet
dhcp-agent` runs it alone on a host that sits on the VLANs. The lab runs it too.
A problem with one network (a missing interface) is logged once and never stops
the others; the next pass tries again.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sqlalchemy.orm import Session

from metalnet import retry
from metalnet.db.engine import Database
from metalnet.dhcp.dnsmasq import render_dnsmasq
from metalnet.dhcp.interfaces import DhcpHostError, DhcpInterfaces
from metalnet.dhcp.network import DhcpNetwork
from metalnet.dhcp.reservations import networks_needing_dhcp, project_network
from metalnet.dhcp.server import DnsmasqServer, ServerFiles, claim, kill_orphan
from metalnet.metrics import DHCP_SERVER_RESTARTS
from metalnet.retry import Retry

log = logging.getLogger(__name__)

# A dnsmasq that dies again soon after a restart waits longer each time (1 s .. 60 s).
RESTART_BACKOFF = Retry(first=1.0, cap=60.0)
ExtraNetworks = Callable[[Session], list[DhcpNetwork]]


@dataclass(frozen=True)
class NetworkCheck:
    """One network that needs DHCP: where it would be served, or why it cannot be."""

    vlan: int
    name: str | None
    interface: str | None
    reservations: int
    problem: str | None


@dataclass
class _Restarts:
    """Back-off state of one network's dnsmasq."""

    waits: Iterator[float] = field(default_factory=RESTART_BACKOFF.delays)
    not_before: float = 0.0
    last: float = 0.0


class DhcpManager:
    """Runs and follows one dnsmasq per network; `start()` a loop, or call `sync()`."""

    def __init__(
        self,
        db: Database,
        interfaces: DhcpInterfaces | None = None,
        state_dir: Path | None = None,
        extra: ExtraNetworks | None = None,
    ) -> None:
        """`extra`: networks the database does not describe as project networks (the
        lab's service network), served by this same manager."""
        settings = db.settings
        self.db = db
        self.interfaces = interfaces or DhcpInterfaces.from_settings(settings)
        self.state_dir = state_dir or Path(settings.dhcp_state_dir)
        self.extra = extra
        self.interval = settings.dhcp_interval
        self.servers: dict[int, DnsmasqServer] = {}  # VLAN -> its network's dnsmasq
        self.problems: dict[int, str] = {}  # VLAN -> why it is not served right now
        self._restarts: dict[int, _Restarts] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state_lock: TextIO | None = None  # held while this manager runs

    # Running ---------------------------------------------------------------------------

    def start(self) -> DhcpManager:
        """Sync now, then every `dhcp_interval` seconds in a background thread."""
        self.sync()
        self._thread = threading.Thread(target=self._loop, name="dhcp-manager", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop and every dnsmasq; files and leases stay for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            for server in self.servers.values():
                server.stop()
            self.servers.clear()
            if self._state_lock is not None:
                self._state_lock.close()  # releases the lock
                self._state_lock = None

    def __enter__(self) -> DhcpManager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync()
            except Exception:
                log.exception("DHCP sync failed; trying again in %.0fs", self.interval)

    # One pass ----------------------------------------------------------------------------

    def sync(self) -> None:
        """Make the running dnsmasq servers match the database, once."""
        with self._lock:
            wanted, problems = self._wanted()
            if self._state_lock is None:
                self._claim_state_dir()
                self._clear_leftovers(set(wanted))
            for vlan in sorted(set(self.servers) - set(wanted)):
                self._retire(vlan)
            for vlan, network in wanted.items():
                try:
                    self._converge(vlan, network)
                except DhcpHostError as exc:
                    problems[vlan] = str(exc)
            self._report(problems)

    def check(self) -> list[NetworkCheck]:
        """What a pass would serve, and what stands in its way, without starting anything."""
        wanted, problems = self._wanted()
        result = [NetworkCheck(vlan, None, None, 0, problem) for vlan, problem in problems.items()]
        for vlan, network in wanted.items():
            try:
                self.interfaces.check(network.interface, vlan)
                problem = None
            except DhcpHostError as exc:
                problem = str(exc)
            hosts = len(network.hosts)
            result.append(NetworkCheck(vlan, network.name, network.interface, hosts, problem))
        return sorted(result, key=lambda check: check.vlan)

    def _wanted(self) -> tuple[dict[int, DhcpNetwork], dict[int, str]]:
        """The networks that need DHCP by VLAN, and those that cannot have it and why."""
        settings = self.db.settings
        dns = [ipaddress.IPv4Address(a) for a in settings.dhcp_dns_servers]
        wanted: dict[int, DhcpNetwork] = {}
        problems: dict[int, str] = {}
        with self.db.session() as session:
            for network in networks_needing_dhcp(session):
                try:
                    interface = self.interfaces.name_for(network.vlan)
                except DhcpHostError as exc:
                    problems[network.vlan] = str(exc)
                    continue
                wanted[network.vlan] = project_network(
                    session, network, interface, None, settings.dhcp_lease_seconds, dns
                )
            for network in self.extra(session) if self.extra else []:
                wanted[network.vlan] = network
        return wanted, problems

    def _converge(self, vlan: int, network: DhcpNetwork) -> None:
        server = self.servers.get(vlan)
        if server is None:
            self._launch(vlan, network)
        elif _config(server, network) != render_dnsmasq(server.network):
            log.info("DHCP %s: network settings changed, restarting dnsmasq", network.name)
            self._retire(vlan, keep_files=True)
            self._launch(vlan, network)
        elif not server.alive():
            self._restart(vlan, server, network)
        else:
            restarts = self._restarts.get(vlan)
            if restarts and retry.clock() - restarts.last > RESTART_BACKOFF.cap:
                del self._restarts[vlan]  # stable again: the next crash restarts at once
            if _reservations(server.network) != _reservations(network):
                server.reload(network)
                log.info("DHCP %s: %d reservations, reloaded", network.name, len(network.hosts))

    def _launch(self, vlan: int, network: DhcpNetwork) -> None:
        self.interfaces.check(network.interface, vlan)
        address = ipaddress.IPv4Interface(f"{network.server}/{network.cidr.prefixlen}")
        self.interfaces.ensure_address(network.interface, address)
        server = DnsmasqServer(network, self._files(vlan), self.interfaces)
        server.start()
        self.servers[vlan] = server
        log.info(
            "DHCP %s: dnsmasq %d serving %d reservations on %s (%s)",
            network.name,
            server.pid,
            len(network.hosts),
            network.interface,
            network.cidr,
        )

    def _restart(self, vlan: int, server: DnsmasqServer, network: DhcpNetwork) -> None:
        """Bring a dead dnsmasq back, at once the first time, then with back-off."""
        restarts = self._restarts.setdefault(vlan, _Restarts())
        now = retry.clock()
        if now < restarts.not_before:
            return
        code = server.process.returncode if server.process else None
        log.warning("DHCP %s: dnsmasq exited (status %s), restarting it", network.name, code)
        DHCP_SERVER_RESTARTS.labels(network=network.name).inc()
        restarts.not_before, restarts.last = now + next(restarts.waits), now
        server.network = server.files.place(network)
        server.start()

    def _retire(self, vlan: int, keep_files: bool = False) -> None:
        """Stop a network's dnsmasq; unless it is coming back, delete its files and address."""
        server = self.servers.pop(vlan)
        self._restarts.pop(vlan, None)
        if keep_files:
            server.stop()
        else:
            server.remove()
            log.info("DHCP %s: no reservations left, dnsmasq stopped", server.network.name)
        network = server.network
        address = ipaddress.IPv4Interface(f"{network.server}/{network.cidr.prefixlen}")
        try:
            self.interfaces.remove_address(network.interface, address)
        except DhcpHostError as exc:
            log.warning("DHCP %s: %s", network.name, exc)

    def _claim_state_dir(self) -> None:
        """Refuse to share the state directory: two managers would fight over it."""
        self._state_lock = claim(self.state_dir, "DHCP manager (serve or dhcp-agent)")

    def _clear_leftovers(self, wanted: set[int]) -> None:
        """After a crash of an earlier manager: stop the dnsmasq servers it left, and
        delete the directories of networks that stopped needing DHCP meanwhile."""
        for directory in self.state_dir.glob("vlan*"):
            kill_orphan(ServerFiles(directory))
            if directory.name.removeprefix("vlan") not in {str(v) for v in wanted}:
                shutil.rmtree(directory, ignore_errors=True)

    def _report(self, problems: dict[int, str]) -> None:
        """Log each network's problem once (when it appears or changes) and its end."""
        for vlan, message in problems.items():
            if self.problems.get(vlan) != message:
                log.error("DHCP VLAN %d not served: %s", vlan, message)
        for vlan in set(self.problems) - set(problems):
            log.info("DHCP VLAN %d: served again", vlan)
        self.problems = problems

    def _files(self, vlan: int) -> ServerFiles:
        return ServerFiles(self.state_dir / f"vlan{vlan}")


def _config(server: DnsmasqServer, network: DhcpNetwork) -> str:
    return render_dnsmasq(server.files.place(network))


def _reservations(network: DhcpNetwork) -> tuple[tuple[str, str, str], ...]:
    return tuple((h.mac, str(h.ip), h.hostname) for h in network.hosts)
