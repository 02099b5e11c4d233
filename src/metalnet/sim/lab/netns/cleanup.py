"""Find and remove everything a lab created, by the lab's name prefix.

Every namespace, link and work directory of one lab carries its prefix (`mnl` and
four hex digits), so removal needs no memory of what was made: the same code tears
down a lab on exit and the leftovers of a lab whose process was killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from metalnet.sim.lab.netns.system import CommandFailed, ip, list_links, list_netns, netns_pids

log = logging.getLogger(__name__)

PREFIX_ROOT = "mnl"
LAB_PREFIX_RE = re.compile(rf"{PREFIX_ROOT}[0-9a-f]{{4}}")
WORKDIR_PREFIX = "metalnet-netlab-"
SETTLE_SECONDS = 3.0  # the kernel destroys a deleted namespace's links asynchronously


@dataclass
class Leftovers:
    """What still exists under one prefix."""

    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    workdirs: list[Path] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.netns or self.links or self.workdirs)

    def labs(self) -> set[str]:
        """The lab prefixes these resources belong to."""
        dirs = [workdir.name.removeprefix(WORKDIR_PREFIX) for workdir in self.workdirs]
        names = [*self.netns, *self.links, *dirs]
        return {match.group(0) for match in map(LAB_PREFIX_RE.match, names) if match}


def workdir_for(lab_prefix: str) -> Path:
    """Where a lab keeps its configs, leases, logs and owner pid."""
    return Path(tempfile.gettempdir()) / f"{WORKDIR_PREFIX}{lab_prefix}"


def find(prefix: str) -> Leftovers:
    """Every namespace, root-namespace link and work directory named with `prefix`."""
    check_prefix(prefix)
    return Leftovers(
        netns=[name for name in list_netns() if name.startswith(prefix)],
        links=[name for name in list_links() if name.startswith(prefix)],
        workdirs=sorted(Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}{prefix}*")),
    )


def check_prefix(prefix: str) -> None:
    """Refuse prefixes that could match resources some other program owns."""
    if not re.fullmatch(rf"{PREFIX_ROOT}[0-9a-f]{{0,4}}", prefix):
        raise ValueError(f"invalid lab prefix {prefix!r}: expected {PREFIX_ROOT} + 0-4 hex digits")


def remove_lab(lab_prefix: str) -> Leftovers:
    """Kill the lab's processes, delete its links, namespaces and work directory.

    Returns what could not be removed (empty when all went), so callers can report.
    """
    found = find(lab_prefix)
    for netns in found.netns:
        _kill_processes_in(netns)
    for link in found.links:  # deleting a port also deletes its peer inside the namespace
        _ip_quietly("link", "del", link)
    for netns in found.netns:
        _ip_quietly("netns", "del", netns)
    for workdir in found.workdirs:
        shutil.rmtree(workdir, ignore_errors=True)
    return _settle(lab_prefix)


def cleanup_stale(prefix: str = PREFIX_ROOT) -> list[str]:
    """Remove what labs under `prefix` left behind when their process died.

    Labs whose owner process is still alive are left alone, so this is safe to call
    while another lab runs. Returns the prefixes of the labs it removed.
    """
    removed = []
    for lab_prefix in sorted(find(prefix).labs()):
        if _owner_alive(lab_prefix):
            continue
        leftovers = remove_lab(lab_prefix)
        if leftovers:
            log.warning("lab %s: could not remove %s", lab_prefix, leftovers)
        removed.append(lab_prefix)
    return removed


def _owner_alive(lab_prefix: str) -> bool:
    """Whether the process recorded in the lab's work directory still runs."""
    try:
        pid = int((workdir_for(lab_prefix) / "owner.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):  # no work dir, garbage, or no such process
        return False
    return True


def _kill_processes_in(netns: str) -> None:
    """SIGKILL whatever runs in the namespace (dnsmasq, agents, a stuck DHCP client)."""
    with contextlib.suppress(CommandFailed):
        for pid in netns_pids(netns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _ip_quietly(*args: str) -> None:
    """Run an `ip` deletion; a resource that is already gone is not an error."""
    try:
        ip(*args)
    except CommandFailed as error:
        log.debug("cleanup: %s", error)


def _settle(lab_prefix: str) -> Leftovers:
    """Wait for the kernel to finish destroying links; retry deleting stragglers."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while (left := find(lab_prefix)) and time.monotonic() < deadline:
        for link in left.links:
            _ip_quietly("link", "del", link)
        for netns in left.netns:
            _ip_quietly("netns", "del", netns)
        time.sleep(0.05)
    return left
