"""The VM lab's readers of a machine's serial console, on text the real programs print.

The agent lines are in the format `metalnet agent` logs with (metalnet.cli.agent), as
captured from a ramdisk's console in `metalnet demo --vm`; no root or QEMU needed.
"""

from __future__ import annotations

from pathlib import Path

from metalnet.power import BootDevice
from metalnet.sim.lab.vm import ADDRESS_LINE, VmMachine, agent_runs

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
