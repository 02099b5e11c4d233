"""The built ramdisk boots in a real virtual machine and its agent works for the
controller: QEMU (TCG, never KVM: nested KVM fails on this machine kind) boots the
kernel and initramfs directly with the command line the controller's iPXE script
gives; the VM's virtio NIC is a tap on a bridge inside a network namespace, joined
by a veth to the host, where `metalnet boot-server` (real dnsmasq) and the
controller listen. The agent gets its address by DHCP, fetches its erase task,
zeroes the VM's virtio disk and reports; the test reads the disk file back.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from bootworld import MACS, BootWorld, free_port
from netns.netns_env import netns_marks
from sqlalchemy import select

from metalnet.api.app import create_app
from metalnet.boot import ipxe, ramdisk
from metalnet.config import load_settings
from metalnet.db.engine import Database
from metalnet.db.models import AgentTask

QEMU = shutil.which("qemu-system-x86_64")
NO_QEMU = "needs QEMU and its iPXE ROMs (apt-get install qemu-system-x86 ipxe-qemu)"
if QEMU is None and os.environ.get("METALNET_REQUIRE_NETNS") == "1":
    raise RuntimeError(f"VM tests required in CI (METALNET_REQUIRE_NETNS=1) but {NO_QEMU}")
pytestmark = [*netns_marks(), pytest.mark.skipif(QEMU is None, reason=NO_QEMU)]
DISK_BYTES = 4 << 20
BOOT_DEADLINE_SECONDS = 300.0  # TCG on a shared 2-core machine
STARTUP_DEADLINE_SECONDS = 15.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def vm_network() -> Iterator[tuple[str, str, str, str]]:
    """(namespace, tap, host interface, subnet prefix): tap and a veth end on a bridge
    in the namespace; the veth's other end on the host carries the server address."""
    tag = secrets.token_hex(2)
    ns, bridge, tap = f"mnq{tag}", "br0", "tap0"
    host, peer = f"mnq{tag}h", f"mnq{tag}p"
    subnet = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:], 16)}"
    try:
        ip("netns", "add", ns)
        ip("-n", ns, "link", "add", bridge, "type", "bridge")
        ip("-n", ns, "tuntap", "add", tap, "mode", "tap")
        ip("link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns)
        for link in (tap, peer):
            ip("-n", ns, "link", "set", link, "master", bridge)
        for link in (bridge, tap, peer):
            ip("-n", ns, "link", "set", link, "up")
        ip("addr", "add", f"{subnet}.1/24", "dev", host)
        ip("link", "set", host, "up")
        yield ns, tap, host, subnet
    finally:
        subprocess.run(["ip", "link", "del", host], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.fixture
def served(world: BootWorld, vm_network: tuple[str, str, str, str], tmp_path: Path):
    """The controller on the host end of the veth, and `metalnet boot-server` on it."""
    _, _, host, subnet = vm_network
    port = free_port()
    text = world.config.read_text()
    for old, new in (
        ('"eth0"', f'"{host}"'),
        ("10.30.0.0/24", f"{subnet}.0/24"),
        ('"10.30.0.1"', f'"{subnet}.1"'),
    ):
        text = text.replace(old, new)
    text = text.replace(world.db.settings.controller_url, f"http://{subnet}.1:{port}")
    world.config.write_text(text)
    db = Database(load_settings(world.config))
    server = uvicorn.Server(
        uvicorn.Config(create_app(db), host=f"{subnet}.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # dnsmasq reads its hosts file as its own user, not root: pytest's tmp_path is 0700.
    state = Path(tempfile.mkdtemp(prefix="metalnet-boot-"))
    state.chmod(0o755)
    argv = [sys.executable, "-m", "metalnet", "--config", str(world.config), "boot-server"]
    argv += ["--state-dir", str(state), "--interval", "1"]
    log = (tmp_path / "boot-server.log").open("wb")
    boot_server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        dnsmasq_log = state / "dnsmasq.log"
        while not (server.started and dnsmasq_log.exists() and "TFTP" in dnsmasq_log.read_text()):
            assert boot_server.poll() is None, (tmp_path / "boot-server.log").read_text()
            assert time.monotonic() < deadline, "controller or boot server did not start"
            time.sleep(0.05)
        world.url = db.settings.controller_url
        yield db
    finally:
        boot_server.terminate()
        boot_server.wait(15)
        log.close()
        server.should_exit = True
        thread.join(10)
        shutil.rmtree(state, ignore_errors=True)
        db.engine.dispose()


def direct_boot(world: BootWorld, built: ramdisk.Ramdisk) -> list[str]:
    """QEMU boots the kernel itself, with the command line the node's script carries."""
    script = httpx.get(
        world.url + ipxe.NODE_ROUTE.format(mac=MACS["n1"].replace(":", "-")), timeout=10
    )
    assert script.status_code == 200, script.text
    kernel_line = next(line for line in script.text.splitlines() if line.startswith("kernel "))
    append = kernel_line.split(" ", 2)[2]  # what iPXE passes: the words after the URL
    return ["-kernel", str(built.kernel), "-initrd", str(built.initrd), "-append", append]


def network_boot(world: BootWorld, built: ramdisk.Ramdisk) -> list[str]:
    """SeaBIOS runs the NIC's iPXE ROM (Debian's ipxe-qemu): DHCP from the boot server,
    then the chain script, the node's script, kernel and initrd, all over HTTP."""
    assert built.kernel.parent == Path(world.db.settings.ramdisk_dir)
    return ["-boot", "n"]


@pytest.mark.parametrize("boot", [direct_boot, network_boot], ids=["direct", "network"])
def test_the_ramdisk_boots_in_a_vm_and_its_agent_erases_the_disk(
    world: BootWorld,
    vm_network: tuple[str, str, str, str],
    served: Database,
    tmp_path: Path,
    boot,
) -> None:
    ns, tap, _, _ = vm_network
    built = ramdisk.build(Path(world.db.settings.ramdisk_dir))
    world.open_task("n1", kind="erase")
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\xab" * DISK_BYTES)
    console = tmp_path / "console.log"
    qemu = subprocess.Popen(
        ["ip", "netns", "exec", ns, "nice", "-n", "10", str(QEMU), "-accel", "tcg",
         "-m", "512", "-nographic", "-no-reboot", "-nodefaults", "-serial", f"file:{console}",
         *boot(world, built),
         "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
         "-device", f"virtio-net-pci,netdev=n0,mac={MACS['n1']}",
         "-drive", f"file={disk},format=raw,if=virtio"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + BOOT_DEADLINE_SECONDS
        while True:
            with served.session() as s:
                state = s.scalar(select(AgentTask.state))
            if state in ("done", "failed"):
                break
            assert qemu.poll() is None, qemu.stderr.read() if qemu.stderr else ""
            assert time.monotonic() < deadline, console.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
    finally:
        qemu.terminate()
        qemu.wait(30)
    log = console.read_text(errors="replace")
    assert state == "done", log[-3000:]
    assert "metalnet ramdisk: starting the agent" in log
    assert disk.read_bytes() == bytes(DISK_BYTES)
