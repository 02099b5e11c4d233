"""`metalnet boot-server` with real dnsmasq in a network namespace, asked by a real
DHCP client (busybox udhcpc) in another: a known MAC gets its reservation and, as
iPXE (option 175), the controller's HTTP script URL; as PXE firmware, the iPXE binary
over TFTP (fetched for real); an unknown MAC gets no answer at all."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import pytest
from bootworld import MACS, BootWorld
from netns.netns_env import netns_marks

from metalnet.boot.service import IPXE_DIR
from metalnet.config import load_settings
from metalnet.db.engine import Database

pytestmark = netns_marks()

READY_DEADLINE_SECONDS = 15.0
DHCP_ATTEMPTS = 4
SERVER = "10.30.0.1"
HOOK = """#!/bin/sh
# Print what the DHCP server said; configure the address so TFTP can follow.
case "$1" in
    bound|renew)
        ip addr add "$ip/$mask" dev "$interface"
        echo "lease ip=$ip boot_file=$boot_file siaddr=$siaddr"
        ;;
esac
exit 0
"""


@dataclass
class Wire:
    """A server namespace and a client namespace joined by a veth pair."""

    server_ns: str
    client_ns: str
    server_if: str
    client_if: str


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def wire() -> Iterator[Wire]:
    prefix = "mnb" + secrets.token_hex(2)
    w = Wire(prefix + "s", prefix + "c", prefix + "s0", prefix + "c0")
    try:
        ip("netns", "add", w.server_ns)
        ip("netns", "add", w.client_ns)
        ip("link", "add", w.server_if, "netns", w.server_ns, "type", "veth", "peer", "name",
           w.client_if, "netns", w.client_ns)  # fmt: skip
        ip("-n", w.server_ns, "addr", "add", f"{SERVER}/24", "dev", w.server_if)
        for ns, link in ((w.server_ns, w.server_if), (w.client_ns, w.client_if)):
            ip("-n", ns, "link", "set", link, "up")
        yield w
    finally:
        for ns in (w.server_ns, w.client_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.fixture
def state(wire: Wire) -> Iterator[Path]:
    """The boot server's state directory, which dnsmasq's own user (not root) can
    reach: it reads the hosts file after dropping root (pytest's tmp_path is 0700)."""
    directory = Path(tempfile.mkdtemp(prefix=f"{wire.server_ns}-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def running_boot_server(wire: Wire, config: Path, state: Path, log: Path) -> Iterator[Popen]:
    """`metalnet boot-server` in the server namespace, once dnsmasq serves TFTP and
    has read its reservations."""
    argv = [sys.executable, "-m", "metalnet", "--config", str(config), "boot-server"]
    argv += ["--state-dir", str(state), "--interval", "1"]
    logged = dnsmasq_log_size(state)
    with log.open("ab") as output:
        process = subprocess.Popen(
            ["ip", "netns", "exec", wire.server_ns, *argv], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until(
            lambda: ready(dnsmasq_log(state, logged), state), "dnsmasq to start", process, log
        )
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(15)


@pytest.fixture
def served_config(world: BootWorld, wire: Wire) -> Path:
    """The world's configuration, serving the server namespace's end of the wire."""
    text = world.config.read_text().replace('"eth0"', f'"{wire.server_if}"')
    text = text.replace("http://127.0.0.1:", f"http://{SERVER}:")
    world.config.write_text(text)
    return world.config


@pytest.fixture
def boot_server(wire: Wire, served_config: Path, state: Path, tmp_path: Path) -> Iterator[Path]:
    """`metalnet boot-server` running in the server namespace; yields its state dir."""
    with running_boot_server(wire, served_config, state, tmp_path / "boot-server.log"):
        yield state


def ready(logged: str, state: Path) -> bool:
    """dnsmasq serves TFTP and read the reservations (as its own user, not root)."""
    hosts = state / "hosts"
    assert f"cannot read {hosts}" not in logged, logged
    return "TFTP root" in logged and f"read {hosts}" in logged


def dnsmasq_log_size(state: Path) -> int:
    path = state / "dnsmasq.log"
    return path.stat().st_size if path.exists() else 0


def dnsmasq_log(state: Path, offset: int = 0) -> str:
    """What dnsmasq logged after `offset` bytes."""
    path = state / "dnsmasq.log"
    return path.read_bytes()[offset:].decode(errors="replace") if path.exists() else ""


def dnsmasq_pid(state: Path) -> int:
    return int((state / "dnsmasq.pid").read_text())


def wait_until(condition, what: str, process: Popen | None = None, log: Path | None = None) -> None:
    """Poll `condition` until it holds; fail after READY_DEADLINE_SECONDS, or at once
    if the boot server exited."""
    deadline = time.monotonic() + READY_DEADLINE_SECONDS
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"boot server exited: {log.read_text() if log else ''}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def ask(wire: Wire, tmp_path: Path, mac: str, *options: str) -> dict[str, str] | None:
    """One DHCP exchange from `mac` (udhcpc -x OPT:HEX sends extra options)."""
    ip("-n", wire.client_ns, "addr", "flush", "dev", wire.client_if)
    ip("-n", wire.client_ns, "link", "set", wire.client_if, "address", mac)
    hook = tmp_path / "hook.sh"
    hook.write_text(HOOK)
    hook.chmod(0o755)
    argv = ["busybox", "udhcpc", "-i", wire.client_if, "-f", "-q", "-n", "-s", str(hook)]
    argv += ["-t", str(DHCP_ATTEMPTS), "-T", "1"]
    for option in options:
        argv += ["-x", option]
    result = subprocess.run(
        ["ip", "netns", "exec", wire.client_ns, *argv],
        capture_output=True,
        text=True,
        timeout=DHCP_ATTEMPTS * 3 + 5,
        check=False,
    )
    leases = [line for line in result.stdout.splitlines() if line.startswith("lease ")]
    if result.returncode != 0 or not leases:
        return None
    return dict(word.split("=", 1) for word in leases[-1].split()[1:])


def test_known_macs_get_reservation_and_boot_chain_unknown_gets_nothing(
    world: BootWorld, wire: Wire, boot_server: Path, tmp_path: Path
) -> None:
    url = load_settings(world.config).controller_url + "/v1/boot/ipxe"
    as_ipxe = ask(wire, tmp_path, MACS["n1"], "0xaf:010101")
    assert as_ipxe is not None
    assert (as_ipxe["ip"], as_ipxe["boot_file"]) == ("10.30.0.2", url)

    as_bios = ask(wire, tmp_path, MACS["n2"])
    assert as_bios == {"ip": "10.30.0.3", "boot_file": "undionly.kpxe", "siaddr": SERVER}
    fetched = tmp_path / "undionly.kpxe"
    subprocess.run(
        ["ip", "netns", "exec", wire.client_ns, "busybox", "tftp", "-g", "-r", "undionly.kpxe",
         "-l", str(fetched), SERVER],
        check=True, timeout=30, capture_output=True,
    )  # fmt: skip
    assert fetched.read_bytes() == (IPXE_DIR / "undionly.kpxe").read_bytes()

    as_uefi = ask(wire, tmp_path, MACS["n1"], "0x5d:0007")  # option 93: x86-64 UEFI
    assert as_uefi is not None and as_uefi["boot_file"] == "ipxe.efi"
    as_bios = ask(wire, tmp_path, MACS["n1"], "0x5d:0000")  # option 93: x86 BIOS
    assert as_bios is not None and as_bios["boot_file"] == "undionly.kpxe"
    as_arm = ask(wire, tmp_path, MACS["n1"], "0x5d:000b")  # ARM64 UEFI: nothing it runs
    assert as_arm is not None and as_arm["boot_file"] == ""

    assert ask(wire, tmp_path, "52:54:00:00:00:99", "0xaf:010101") is None


def test_a_node_enrolled_later_is_served_without_a_restart_by_hand(
    world: BootWorld, wire: Wire, boot_server: Path, tmp_path: Path
) -> None:
    from metalnet import inventory

    """The reservation reaches dnsmasq by its hosts file and a SIGHUP (metalnet.dhcp's
    DnsmasqServer): the same dnsmasq process serves it, the other leases stay."""
    late = "52:54:00:00:00:33"
    assert ask(wire, tmp_path, late) is None
    pid = dnsmasq_pid(boot_server)
    logged = dnsmasq_log_size(boot_server)
    db = Database(load_settings(world.config))
    with db.session() as s:
        inventory.add_node(s, db.settings, "n3", late, "sw", "eth3", "ipmi://127.0.0.1:633")
    db.engine.dispose()
    hosts = boot_server / "hosts"
    wait_until(
        lambda: f"read {hosts}" in dnsmasq_log(boot_server, logged), "dnsmasq to re-read hosts"
    )
    assert f"{late},10.30.0.4,n3" in hosts.read_text()
    assert ask(wire, tmp_path, late) == {
        "ip": "10.30.0.4",
        "boot_file": "undionly.kpxe",
        "siaddr": SERVER,
    }
    assert dnsmasq_pid(boot_server) == pid, "served without restarting dnsmasq"


def test_a_dnsmasq_that_died_is_started_again(
    world: BootWorld, wire: Wire, boot_server: Path, tmp_path: Path
) -> None:
    pid = dnsmasq_pid(boot_server)
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: (boot_server / "dnsmasq.pid").exists() and dnsmasq_pid(boot_server) != pid,
        "a new dnsmasq",
    )
    assert ask(wire, tmp_path, MACS["n2"]) == {
        "ip": "10.30.0.3",
        "boot_file": "undionly.kpxe",
        "siaddr": SERVER,
    }


def test_dnsmasq_left_by_a_killed_boot_server_is_replaced(
    world: BootWorld, wire: Wire, served_config: Path, state: Path, tmp_path: Path
) -> None:
    """dnsmasq runs in a session of its own, so a SIGKILL of the boot server leaves it
    running and holding the DHCP port; the next boot server stops it first."""
    log = tmp_path / "boot-server.log"
    with running_boot_server(wire, served_config, state, log) as first:
        orphan = dnsmasq_pid(state)
        first.kill()
        first.wait(15)
    assert Path(f"/proc/{orphan}").exists(), "dnsmasq outlived its boot server"
    with running_boot_server(wire, served_config, state, log):
        assert not Path(f"/proc/{orphan}").exists()
        assert dnsmasq_pid(state) != orphan
        assert ask(wire, tmp_path, MACS["n1"]) == {
            "ip": "10.30.0.2",
            "boot_file": "undionly.kpxe",
            "siaddr": SERVER,
        }


def test_a_second_boot_server_on_the_same_state_directory_is_refused(
    world: BootWorld, wire: Wire, boot_server: Path, served_config: Path
) -> None:
    pid = dnsmasq_pid(boot_server)
    argv = [sys.executable, "-m", "metalnet", "--config", str(served_config), "boot-server"]
    argv += ["--state-dir", str(boot_server)]
    second = subprocess.run(
        ["ip", "netns", "exec", wire.server_ns, *argv],
        capture_output=True,
        text=True,
        timeout=READY_DEADLINE_SECONDS,
        check=False,
    )
    assert second.returncode == 1
    assert second.stderr.strip().endswith(f"another boot server runs on {boot_server}")
    assert Path(f"/proc/{pid}").exists(), "the first boot server's dnsmasq still runs"
