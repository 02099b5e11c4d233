"""The VM lab's readers of a machine's serial console, on text the real programs print.

The agent lines are in the format `metalnet agent` logs with (metalnet.cli.agent), the
firmware lines as SeaBIOS and iPXE print them, all captured from a machine's console
in `metalnet demo --vm`; no QEMU needed (the console pings need root for a network
namespace of their own).
"""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

import pytest

from metalnet.boot.demo_image import PROMPT, SerialConsole
from metalnet.power import BootDevice
from metalnet.sim.lab.vm import (
    ADDRESS_LINE,
    ESCAPE,
    BootRecord,
    VmMachine,
    agent_runs,
    ping_command,
    reached,
)

COMMAND_DEADLINE_SECONDS = 30

CONSOLE = """\
metalnet ramdisk: address 10.10.0.101/24 on eth0\r
metalnet ramdisk: starting the agent\r
2026-12-02 00:08:44,329 agent node=n1 waiting for a task\r
2026-12-02 00:08:44,551 agent node=n1 task=1 kind=deploy image=http://h/t.img disk=/dev/vda\r
2026-12-02 00:08:44,587 agent node=n1 task=1 phase=download bytes=0/19922944\r
[   30.103601] virtio_blk virtio1: 1/0/0 default/read/poll queues\r
2026-12-02 00:08:47,174 agent node=n1 task=1 result=ok bytes=19922944 sha256=01f6 message=ok\r
2026-12-02 00:18:27,232 agent node=n1 task=4 kind=erase image=- disk=/dev/vda\r
2026-12-02 00:18:28,903 agent node=n1 task=4 result=ok bytes=33554432 sha256=- message=ok\r
2026-12-02 00:19:01,000 agent node=n1 task=5 kind=erase image=- disk=/dev/vda\r
"""


def test_agent_runs_are_timed_from_taking_the_task_to_its_result() -> None:
    runs = agent_runs(CONSOLE)
    assert [(r.kind, r.bytes, r.seconds) for r in runs] == [
        ("deploy", 19922944, 2.623),
        ("erase", 33554432, 1.671),
    ]  # task 5 never reported: not a run
    assert round(runs[0].mb_per_s, 2) == 7.6


def test_the_address_line_of_the_ramdisk_and_of_the_demo_image() -> None:
    demo = "metalnet-demo: no address\r\nmetalnet-demo: address 10.20.0.2/24\r\n"
    assert ADDRESS_LINE.findall(CONSOLE + demo) == ["10.10.0.101", "10.20.0.2"]


def test_the_boot_device_picks_qemus_boot_order(tmp_path: Path) -> None:
    vm = VmMachine("n1", "52:54:00:00:00:01", tmp_path / "disk.img", tmp_path, tap="mnl1p1")
    for device, order in ((BootDevice.PXE, "order=n"), (BootDevice.DISK, "order=c")):
        argv = vm.argv(device, monitor_fd=7)
        assert argv[argv.index("-boot") + 1] == order
        assert "tcg" in argv and "kvm" not in " ".join(argv)
        assert "tap,id=nic,ifname=mnl1p1,script=no,downscript=no" in argv


# A network boot's console as the lab logs it (SeaBIOS mirroring the screen, with its
# escape codes), cut where the watcher would have read it, and when (seconds).
BOOT = [
    (0.2, "\x1bc\x1b[?7lSeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n\r\n"),
    (0.6, "iPXE (PCI 00:02.0) starting execution...ok\r\niPXE initialising devices...ok\r\n"),
    (2.6, "Configuring (net0 52:54:00:00:00:00)...."),
    (5.7, ".. ok\r\nnet0: 10.10.0.101/255.255.255.0\r\nnet0: fe80::5054:ff:fe00:0/64\r\n"),
    (5.9, "http://10.10.0.2:8470/v1/boot/ramdisk/vmlinuz... 73%\b\b\b\b    \b\b\b\b ok\r\n"),
    (7.1, "http://10.10.0.2:8470/v1/boot/ramdisk/initrd.img... 28%"),
    (13.4, "\x1bc\x1b[2J[    0.000000] Linux version 6.1.0-57-cloud-amd64 (debian-kernel\r\n"),
    (25.6, "metalnet ramdisk: loading modules\r\n" + CONSOLE.split("2026-12-02 00:08:44,551")[0]),
    (45.6, CONSOLE[CONSOLE.index("2026-12-02 00:08:44,551") :]),
]


def test_a_boots_milestones_are_when_the_console_first_showed_them() -> None:
    record = BootRecord(BootDevice.PXE, started=1000.0)
    console = ""
    for seconds, arrived in BOOT:
        console += arrived
        record.see(ESCAPE.sub("", console), 1000.0 + seconds)
    assert record.milestones == {
        "seabios": 0.2,
        "ipxe": 0.6,
        "ipxe_dhcp": 2.6,
        "ipxe_address": 5.7,
        "kernel_download": 5.9,
        "initrd_download": 7.1,
        "kernel": 13.4,
        "init": 25.6,
        "address": 25.6,
        "agent": 25.6,
        "agent_ready": 25.6,
        "task": 45.6,
        "task_done": 45.6,
    }
    assert record.phases() == {
        "firmware": 2.6,
        "ipxe_dhcp": 3.1,
        "download": 7.5,
        "kernel_to_init": 12.2,
        "init_to_agent": 0.0,
        "agent_start": 0.0,
        "task": 0.0,
    }
    summary = record.summary()
    assert (summary["to_address_seconds"], summary["to_agent_seconds"]) == (25.6, 25.6)
    assert list(summary["milestones"])[:3] == ["seabios", "ipxe", "ipxe_dhcp"]


def test_the_demos_table_shows_each_boot_phase(capsys: pytest.CaptureFixture[str]) -> None:
    """`metalnet demo --vm` without --json prints where each boot's time went too."""
    from metalnet.cli.demo import _print_vm

    record = BootRecord(BootDevice.PXE, started=1000.0)
    record.see(ESCAPE.sub("", "".join(text for _, text in BOOT)), 1013.4)
    vm = {
        "phase_mean_seconds": {"pxe": record.phases(), "disk": {"init_to_address": 4.8}},
        "firmware_to_agent_seconds": [13.4],
        "deploy_mb_per_s": [5.6],
        "disk_boot_to_tenant_dhcp_seconds": [4.8],
        "erase_mb_per_s": [33.0],
        "goal_seconds": 180,
        "accelerator": "tcg",
        "goal_met": True,
    }
    _print_vm(vm)
    shown = capsys.readouterr().out
    assert "mean seconds per boot phase" in shown
    for phase in (*record.phases(), "init_to_address"):
        assert phase in shown, phase
    assert "goal: whole demo under 180s (tcg): met" in shown


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace of its own needs root")
def test_the_console_pings_run_on_a_real_shell_and_only_answers_count() -> None:
    """`ping_command` in busybox sh on a pseudo-terminal (which echoes the typed line,
    wrapped at 80 columns), in a network namespace with only loopback: 127/8 answers,
    TEST-NET-1 (RFC 5737) has no route."""
    answering = [f"127.0.0.{i}" for i in range(1, 5)]
    silent = [f"192.0.2.{i}" for i in range(1, 6)]
    leader, follower = pty.openpty()
    shell = subprocess.Popen(
        ["unshare", "--net", "busybox", "sh", "-c", "ip link set lo up; exec busybox sh -i"],
        stdin=follower, stdout=follower, stderr=follower, start_new_session=True,
        env={"PS1": PROMPT, "PATH": os.environ["PATH"]},
    )  # fmt: skip
    os.close(follower)
    with os.fdopen(leader, "rb") as reader, os.fdopen(os.dup(leader), "wb") as writer:
        try:
            console = SerialConsole(reader, writer)
            console.expect_prompt(COMMAND_DEADLINE_SECONDS)
            output, status = console.run(ping_command(answering + silent), COMMAND_DEADLINE_SECONDS)
        finally:  # before the streams close: the console's reader thread ends on EIO
            shell.kill()
            shell.wait(10)
    assert status == 0
    assert reached(output, answering + silent) == {
        **dict.fromkeys(answering, True),
        **dict.fromkeys(silent, False),
    }
