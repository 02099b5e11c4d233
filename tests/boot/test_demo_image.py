"""`metalnet image build-demo` for real (Debian's packages via apt) and the image booted
in QEMU: SeaBIOS (legacy BIOS) boots the disk, syslinux the kernel, whose busybox init
takes its address from QEMU's user-network DHCP server and opens a shell on the serial
console that runs a command and reports its exit status.

QEMU runs under TCG, never KVM (nested KVM fails on this machine kind). The build uses
the user's cache directory, so only the first run downloads (~30 MB).
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from bootworld import free_port
from typer.testing import CliRunner

from metalnet.boot import demo_image
from metalnet.cli.main import app

QEMU = shutil.which("qemu-system-x86_64")
NEEDED = ("apt-get", "apt-cache", "dpkg-deb", "busybox")
MISSING = [tool for tool in NEEDED if shutil.which(tool) is None]
NO_QEMU = "needs QEMU and its iPXE ROMs (apt-get install qemu-system-x86 ipxe-qemu)"
REQUIRED = os.environ.get("METALNET_REQUIRE_NETNS") == "1"
if REQUIRED and (QEMU is None or MISSING):
    raise RuntimeError(f"VM tests required in CI but {NO_QEMU} and Debian's tools {MISSING}")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs Debian's tools {MISSING}")
needs_qemu = pytest.mark.skipif(QEMU is None, reason=NO_QEMU)
BOOT_DEADLINE_SECONDS = 300.0  # TCG on a shared 2-core machine
COMMAND_DEADLINE_SECONDS = 60.0
MAC = "52:54:00:6d:6e:01"
GATEWAY = "10.0.2.2"  # QEMU user networking: the gateway, DHCP server at 10.0.2.2
ADDRESS = "10.0.2.15/24"  # the first address QEMU's built-in DHCP server hands out


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> demo_image.DemoImage:
    return demo_image.build_demo_image(tmp_path_factory.mktemp("image") / "demo.img")


class Monitor:
    """QEMU's human monitor over TCP: one command at a time, answered at its prompt."""

    def __init__(self, port: int, deadline: float) -> None:
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "QEMU's monitor did not listen"
                time.sleep(0.05)
        self.reply = b""
        self._prompt()

    def _prompt(self) -> None:
        while not self.reply.endswith(b"(qemu) "):
            chunk = self.sock.recv(4096)  # the socket's timeout bounds each wait
            assert chunk, "QEMU's monitor closed"
            self.reply += chunk

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def command(self, line: str) -> None:
        self.reply = b""
        self.sock.sendall(line.encode() + b"\n")
        self._prompt()


@needs_qemu
def test_the_image_boots_retries_dhcp_until_its_link_is_up_and_runs_commands(
    image: demo_image.DemoImage, tmp_path: Path
) -> None:
    """The VM starts paused with its NIC's link down (as a node whose port is still
    moving): the OS says it has no address until the link comes up, then takes one."""
    disk = tmp_path / "disk.img"
    shutil.copyfile(image.path, disk)
    port = free_port()
    with subprocess.Popen(
        ["nice", "-n", "10", str(QEMU), "-accel", "tcg", "-m", "256", "-nographic",
         "-nodefaults", "-no-reboot", "-S", "-monitor", f"tcp:127.0.0.1:{port},server=on,wait=off",
         "-serial", "stdio", "-drive", f"file={disk},if=virtio,format=raw", "-boot", "c",
         "-netdev", "user,id=n0", "-device", f"virtio-net-pci,netdev=n0,mac={MAC}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    ) as qemu:  # fmt: skip
        try:
            assert qemu.stdout is not None and qemu.stdin is not None
            console = demo_image.SerialConsole(qemu.stdout, qemu.stdin)
            with Monitor(port, time.monotonic() + COMMAND_DEADLINE_SECONDS) as monitor:
                monitor.command("set_link n0 off")
                monitor.command("cont")
                console.expect(r"^SYSLINUX 6", BOOT_DEADLINE_SECONDS)  # the disk's bootloader ran
                console.expect(r"^metalnet-demo: no address$", BOOT_DEADLINE_SECONDS)
                monitor.command("set_link n0 on")
            address = console.wait_for_address(BOOT_DEADLINE_SECONDS)
            assert address == ADDRESS, console.text[-2000:]
            output, status = console.run(f"ping -c1 -W2 {GATEWAY}", COMMAND_DEADLINE_SECONDS)
            assert status == 0, output
            assert "1 packets received" in output
            output, status = console.run(f"cat /sys/class/net/{demo_image.NIC}/address", 60)
            assert (output.strip(), status) == (MAC, 0)
            _, status = console.run("false", COMMAND_DEADLINE_SECONDS)  # the command's status
            assert status == 1
            assert console.text.count("metalnet-demo: address") == 1
        finally:
            qemu.kill()


def test_the_console_contract_runs_on_a_real_shell_over_a_terminal() -> None:
    """SerialConsole against busybox sh on a pseudo-terminal, which echoes typed lines
    and ends lines in CR LF as the VM's serial tty does."""
    leader, follower = pty.openpty()
    # The address line arrives in two parts, as a slow serial line may deliver it.
    part = f"printf '{demo_image.TAG}: address 1'; sleep 0.5; echo '92.0.2.7/28'"
    script = f"{part}; exec busybox sh -i"
    shell = subprocess.Popen(
        ["busybox", "sh", "-c", script],
        stdin=follower, stdout=follower, stderr=follower, start_new_session=True,
        env={"PS1": demo_image.PROMPT, "PATH": os.environ["PATH"]},
    )  # fmt: skip
    os.close(follower)
    with os.fdopen(leader, "rb") as reader, os.fdopen(os.dup(leader), "wb") as writer:
        console = demo_image.SerialConsole(reader, writer)
        assert console.wait_for_address(COMMAND_DEADLINE_SECONDS) == "192.0.2.7/28"
        assert console.run("echo one; echo two", COMMAND_DEADLINE_SECONDS) == ("one\ntwo\n", 0)
        assert console.run("(exit 3)", COMMAND_DEADLINE_SECONDS)[1] == 3
        # "exit" ends the shell before "echo rc=$?": nothing more comes, and the console
        # says so instead of waiting until the deadline.
        with pytest.raises(demo_image.ConsoleError, match="the console closed"):
            console.run("exit", COMMAND_DEADLINE_SECONDS)
    shell.wait(10)


def test_the_partition_table_reads_back_with_fdisk(image: demo_image.DemoImage) -> None:
    """busybox fdisk (an independent reader) sees one active FAT partition at 1 MiB
    filling the rest of the disk."""
    listing = subprocess.run(
        ["busybox", "fdisk", "-l", str(image.path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    rows = [line.split() for line in listing.splitlines() if line.startswith(f"{image.path}1")]
    assert len(rows) == 1, listing
    _, boot, start_chs, end_chs, start, end, sectors, _, kind, *_ = rows[0]
    assert boot == "*"
    cylinder, rest = divmod(int(end), demo_image.HEADS * demo_image.PER_TRACK)
    head, sector = divmod(rest, demo_image.PER_TRACK)
    assert (start_chs, end_chs) == ("1,0,1", f"{cylinder},{head},{sector + 1}")
    assert int(start) == demo_image.PARTITION_START
    assert int(end) + 1 == image.size_bytes // demo_image.SECTOR
    assert int(sectors) == int(end) - int(start) + 1
    assert kind in ("1", "e", "c")  # FAT12, FAT16 LBA, FAT32 LBA
    with image.path.open("rb") as disk:
        assert disk.read(512)[510:] == b"\x55\xaa"


def test_rebuild_with_nothing_changed_reuses_the_cache(
    image: demo_image.DemoImage, tmp_path: Path
) -> None:
    again = demo_image.build_demo_image(tmp_path / "again.img")
    assert again.cached
    assert (again.key, again.sha256) == (image.key, image.sha256)
    assert again.path.read_bytes() == image.path.read_bytes()


def test_a_fresh_build_from_the_same_inputs_gives_the_same_bytes(
    image: demo_image.DemoImage, tmp_path: Path
) -> None:
    """Only the built image is missing (the .deb files are shared): the build runs
    again, and mtools, syslinux and the MBR writer reproduce the image exactly."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "debs").symlink_to(demo_image.default_cache() / "debs")
    again = demo_image.build_demo_image(tmp_path / "again.img", tmp_path / "cache")
    assert not again.cached
    assert (again.key, again.sha256) == (image.key, image.sha256)


def test_the_command_writes_the_image_and_reports_it_as_json(
    image: demo_image.DemoImage, tmp_path: Path
) -> None:
    output = tmp_path / "demo.img"
    result = CliRunner().invoke(app, ["image", "build-demo", "--output", str(output), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["path"], report["sha256"]) == (str(output), image.sha256)
    assert report["size_bytes"] == output.stat().st_size == image.size_bytes
    assert report["cached"] is True


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (".", "it is a directory"),
        ("missing/demo.img", "is not a directory"),
        ("file/demo.img", "is not a directory"),
    ],
)
def test_bad_output_is_refused_naming_it(tmp_path: Path, output: str, message: str) -> None:
    (tmp_path / "file").write_text("a regular file\n")
    before = sorted(tmp_path.rglob("*"))
    path = tmp_path / output
    result = CliRunner().invoke(app, ["image", "build-demo", "--output", str(path)])
    assert result.exit_code == 2, result.output
    assert f"invalid output {str(path)!r}: " in result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == before
