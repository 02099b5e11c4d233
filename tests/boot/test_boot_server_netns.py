"""`metalnet boot-server` with real dnsmasq in a network namespace, asked by a real
DHCP client (busybox udhcpc) in another: a known MAC gets its reservation and, as
iPXE (option 175), the controller's HTTP script URL; as PXE firmware, the iPXE binary
over TFTP (fetched for real); an unknown MAC gets no answer at all."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
def boot_server(world: BootWorld, wire: Wire, tmp_path: Path) -> Iterator[Path]:
    """`metalnet boot-server` running in the server namespace; yields its state dir."""
    text = world.config.read_text().replace('"eth0"', f'"{wire.server_if}"')
    text = text.replace("http://127.0.0.1:", f"http://{SERVER}:")
    world.config.write_text(text)
    state = tmp_path / "state"
    argv = [sys.executable, "-m", "metalnet", "--config", str(world.config), "boot-server"]
    argv += ["--state-dir", str(state), "--interval", "1"]
    log = (tmp_path / "boot-server.log").open("wb")
    process = subprocess.Popen(
        ["ip", "netns", "exec", wire.server_ns, *argv], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + READY_DEADLINE_SECONDS
        dnsmasq_log = state / "dnsmasq.log"
        while not (dnsmasq_log.exists() and "TFTP root" in dnsmasq_log.read_text()):
            assert process.poll() is None, (tmp_path / "boot-server.log").read_text()
            assert time.monotonic() < deadline, "dnsmasq did not start"
            time.sleep(0.05)
        yield state
    finally:
        process.terminate()
        process.wait(15)
        log.close()


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

    assert ask(wire, tmp_path, "52:54:00:00:00:99", "0xaf:010101") is None


def test_a_node_enrolled_later_is_served_without_a_restart_by_hand(
    world: BootWorld, wire: Wire, boot_server: Path, tmp_path: Path
) -> None:
    from metalnet import inventory

    late = "52:54:00:00:00:33"
    assert ask(wire, tmp_path, late) is None
    db = Database(load_settings(world.config))
    with db.session() as s:
        inventory.add_node(s, db.settings, "n3", late, "sw", "eth3", "ipmi://127.0.0.1:623")
    db.engine.dispose()
    deadline = time.monotonic() + READY_DEADLINE_SECONDS
    while f"{late},10.30.0.4,n3" not in (boot_server / "dnsmasq.conf").read_text():
        assert time.monotonic() < deadline, "boot server did not pick up the new node"
        time.sleep(0.1)
    assert ask(wire, tmp_path, late) == {
        "ip": "10.30.0.4",
        "boot_file": "undionly.kpxe",
        "siaddr": SERVER,
    }
