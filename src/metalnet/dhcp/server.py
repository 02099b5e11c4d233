"""One network's running dnsmasq: its files, its process, reload and release.

Files live in one directory per network (configuration, reservations, leases, log,
pid), so removing a network removes exactly one directory. Reservations are a
`dhcp-hostsfile`: dnsmasq re-reads it on SIGHUP and keeps its leases, so a new or
removed reservation needs no restart (dnsmasq(8), SIGHUP: "re-reads ... any file
given by --dhcp-hostsfile").

A removed reservation's lease is released with `dhcp_release` (dnsmasq-utils), the
way OpenStack Neutron's DHCP agent does for deleted ports: dnsmasq keeps a lease
in memory until it expires, and while it does it will not hand that address to
the next reservation ("not using configured address ... because it is leased to").
`dhcp_release` talks to dnsmasq over the loopback device, which must be up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TextIO

from metalnet.dhcp.dnsmasq import render_dnsmasq, render_hosts
from metalnet.dhcp.interfaces import DhcpHostError, DhcpInterfaces, program
from metalnet.dhcp.network import DhcpHost, DhcpNetwork

log = logging.getLogger(__name__)

READY_SECONDS = 10.0
STOP_GRACE_SECONDS = 3.0
# dnsmasq logs this once its DHCP socket is bound to the one interface it serves.
READY_MARK = b"sockets bound"


@dataclasses.dataclass(frozen=True)
class ServerFiles:
    """The files of one network's dnsmasq, all in `directory`."""

    directory: Path

    @property
    def conf(self) -> Path:
        return self.directory / "dnsmasq.conf"

    @property
    def hosts(self) -> Path:
        return self.directory / "hosts"

    @property
    def leases(self) -> Path:
        return self.directory / "leases"

    @property
    def log(self) -> Path:
        return self.directory / "dnsmasq.log"

    @property
    def pid(self) -> Path:
        return self.directory / "dnsmasq.pid"

    @property
    def stderr(self) -> Path:
        return self.directory / "stderr"

    def place(self, network: DhcpNetwork) -> DhcpNetwork:
        """`network` with its hosts, leases and log in this directory."""
        return dataclasses.replace(
            network, hosts_file=self.hosts, lease_file=self.leases, log_file=self.log
        )


class DnsmasqServer:
    """dnsmasq for one network, started in the foreground as a child of this process."""

    def __init__(self, network: DhcpNetwork, files: ServerFiles, host: DhcpInterfaces) -> None:
        self.files = files
        self.network = files.place(network)
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Write the files and start dnsmasq; return once it listens, else DhcpHostError."""
        self.files.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        _write(self.files.conf, render_dnsmasq(self.network))
        _write(self.files.hosts, render_hosts(self.network))
        argv = [program("dnsmasq"), "--keep-in-foreground", f"--conf-file={self.files.conf}"]
        argv.append(f"--pid-file={self.files.pid}")
        logged = _size(self.files.log)  # a restart appends to the same log
        with self.files.stderr.open("wb") as stderr:
            self.process = subprocess.Popen(
                self.host.command(argv), stderr=stderr, start_new_session=True
            )
        try:
            self._wait_for_hosts(logged, READY_MARK)
        except DhcpHostError:
            self.stop()
            raise

    def _wait_for_hosts(self, logged: int, *marks: bytes) -> None:
        """Wait until dnsmasq logged `marks` and reading its hosts file (after `logged`).

        dnsmasq reads the hosts file as its unprivileged user, after dropping root:
        a file it cannot read is a served network without reservations, so it is an error.
        """
        hosts = str(self.files.hosts).encode()
        deadline = time.monotonic() + READY_SECONDS
        while True:
            text = _read_from(self.files.log, logged)
            if b"cannot read " + hosts in text:
                raise DhcpHostError(
                    f"dnsmasq for {self.network.name} cannot read {self.files.hosts}: "
                    "its user (not root) must be able to reach the DHCP state directory"
                )
            if b"read " + hosts in text and all(mark in text for mark in marks):
                return
            if self.process is None or self.process.poll() is not None:
                reason = self.files.stderr.read_text().strip() or "it exited"
                raise DhcpHostError(f"dnsmasq for {self.network.name}: {reason}")
            if time.monotonic() > deadline:
                raise DhcpHostError(f"dnsmasq for {self.network.name} did not start in time")
            time.sleep(0.01)

    def reload(self, network: DhcpNetwork) -> None:
        """Serve `network`'s reservations from now on: hosts file rewritten, SIGHUP,
        leases of removed reservations released. Returns once dnsmasq re-read the file."""
        network = self.files.place(network)
        kept = {(host.mac, host.ip) for host in network.hosts}
        removed = [host for host in self.network.hosts if (host.mac, host.ip) not in kept]
        logged = _size(self.files.log)
        _write(self.files.hosts, render_hosts(network))
        self.network = network
        if self.process is None or self.process.poll() is not None:
            return  # the manager restarts a dead server; it reads the new file then
        for host in removed:  # first: the address may be reserved to a new MAC already
            self._release(host)
        os.kill(self.process.pid, signal.SIGHUP)
        self._wait_for_hosts(logged)

    def _release(self, host: DhcpHost) -> None:
        """Drop the lease of a reservation that is gone, so its address is free now."""
        argv = [program("dhcp_release"), self.network.interface, str(host.ip), host.mac]
        try:
            self.host.run(argv)
        except DhcpHostError as exc:
            log.warning("dnsmasq for %s: could not release %s: %s", self.network.name, host.ip, exc)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; the files stay."""
        process, self.process = self.process, None
        if process is None:
            return
        _stop(process)

    def remove(self) -> None:
        """Stop dnsmasq and delete every file of this network."""
        self.stop()
        shutil.rmtree(self.files.directory, ignore_errors=True)


def claim(directory: Path, holder: str) -> TextIO:
    """Lock `directory` for this process while the returned file stays open.

    Two processes running dnsmasq from one state directory would stop each other's
    servers as orphans; the second is refused, naming what holds the lock.
    """
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    lock = (directory / ".lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DhcpHostError(f"another {holder} runs on {directory}") from None
    return lock


def kill_orphan(files: ServerFiles) -> None:
    """Stop a dnsmasq a previous, killed manager left running on these files.

    Only a process whose command line names this directory's configuration is
    signalled, so a recycled pid never hits a stranger.
    """
    try:
        pid = int(files.pid.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if f"--conf-file={files.conf}".encode() in cmdline.split(b"\0"):
        log.warning("stopping dnsmasq %d left over from an earlier run (%s)", pid, files.directory)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _stop(process: subprocess.Popen[bytes]) -> None:
    for number in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, number)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_GRACE_SECONDS)


def _write(path: Path, text: str) -> None:
    """Replace `path` atomically: dnsmasq never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)  # dnsmasq reads it after dropping root
    tmp.replace(path)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _read_from(path: Path, offset: int) -> bytes:
    """The log written since `offset`; all of it if it was truncated (copytruncate)."""
    if not path.exists():
        return b""
    with path.open("rb") as handle:
        handle.seek(offset if offset <= path.stat().st_size else 0)
        return handle.read()
