"""A lab node as a real QEMU machine: what its BMC's power actions do to it.

The simulated BMCs (metalnet.sim.bmc) keep the power and boot-device model; with a
`VmMachine` behind a node, their `on_change` callback becomes QEMU itself:

- power on: start `qemu-system-x86_64 -accel tcg` (never KVM: nested KVM fails on this
  machine kind) booting the chosen device, as Ironic's virtual BMCs do with libvirt
  (sushy-tools' libvirt driver sets the domain's boot order, then starts it):
  network is SeaBIOS running the iPXE ROM of the virtio NIC (Debian's `ipxe-qemu`),
  disk is SeaBIOS booting the virtio disk;
- power off: QMP `quit` (a hard power cut, as a BMC's ForceOff);
- reset: QMP `system_reset`; when the boot device changed since the process started,
  the process is restarted instead (QEMU's boot order is fixed on its command line).

QMP is spoken through `qemu.qmp`, QEMU's own client library. The NIC is a tap the
lab's data plane moves between VLAN bridges like any other switch port; the disk is
the node's raw disk file. The serial console is a Unix socket that QEMU also logs to a
file: the lab reads boot progress and addresses from the log, and runs commands in a
tenant OS that offers a shell there.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import logging
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from metalnet.boot.demo_image import TAG, ConsoleError, SerialConsole
from metalnet.errors import MetalnetError
from metalnet.power import BootDevice
from metalnet.sim.bmc import PowerEvent

log = logging.getLogger(__name__)

MEMORY_MIB = 512
QMP_TIMEOUT = 10.0
QUIT_SECONDS = 15.0
CONSOLE_PROMPT_SECONDS = 5.0
# What the ramdisk (metalnet.boot.ramdisk) and the demo image print once DHCP answered.
ADDRESS_LINE = re.compile(r"metalnet[- ](?:ramdisk|demo): address (\d+\.\d+\.\d+\.\d+)")
AGENT_LINE = "metalnet ramdisk: starting the agent"
SHELL_LINE = f"{TAG}: shell"  # the demo image's console contract (boot/demo_image.py)
REACHED_LINE = re.compile(r"^reached (\S+)$", re.MULTILINE)  # what `ping_all` has echoed
WATCH_SECONDS = 0.2
# The agent's log lines on the console (metalnet.cli.agent's format): when it took a
# task (`kind=`) and when it reported it done (`result=ok bytes=N`).
AGENT_TASK_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) agent node=\S+ task=(\d+) "
    r"(?:kind=(\w+)|result=ok bytes=(\d+))",
    re.MULTILINE,
)
# SeaBIOS copies what the firmware writes to the screen (its own banner, the iPXE ROM's
# messages) to the serial port whose I/O address fw_cfg's `etc/sercon-port` holds
# (SeaBIOS src/sercon.c, sercon_setup: romfile_loadint, a little-endian integer): the
# console log then shows the firmware's progress too. 0x3f8 is COM1, QEMU's `-serial`.
SERCON_PORT = 0x3F8
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc")  # sercon's cursor and reset codes
# A boot's milestones, each the first console line matching it: what SeaBIOS, the iPXE
# ROM (with sercon), the kernel, the /init scripts and the agent print, in boot order.
MILESTONES = (
    ("seabios", re.compile(r"SeaBIOS \(version")),
    ("ipxe", re.compile(r"iPXE initialising devices")),
    ("ipxe_dhcp", re.compile(r"Configuring \(net0")),
    ("ipxe_address", re.compile(r"^net0: \d+\.\d+\.\d+\.\d+/", re.MULTILINE)),
    ("kernel_download", re.compile(r"/vmlinuz\.\.\.")),
    ("initrd_download", re.compile(r"/initrd\.img\.\.\.")),
    ("disk", re.compile(r"Booting from Hard Disk")),
    ("kernel", re.compile(r"Linux version")),
    ("init", re.compile(r"(?:ramdisk|demo): loading modules")),
    ("address", ADDRESS_LINE),
    ("agent", re.compile(re.escape(AGENT_LINE))),
    ("agent_ready", re.compile(r"agent node=\S+ waiting for a task")),
    ("task", re.compile(r"agent node=\S+ task=\d+ kind=")),
    ("task_done", re.compile(r"agent node=\S+ task=\d+ result=")),
    ("shell", re.compile(re.escape(SHELL_LINE))),
)
# A boot's phases by boot device: (name, from milestone, to milestone); "" is power on.
PHASES = {
    BootDevice.PXE: (
        ("firmware", "", "ipxe_dhcp"),  # SeaBIOS, the iPXE ROM's start and banner
        ("ipxe_dhcp", "ipxe_dhcp", "ipxe_address"),
        ("download", "kernel_download", "kernel"),  # kernel and initrd over HTTP
        ("kernel_to_init", "kernel", "init"),  # the kernel, unpacking the initramfs
        ("init_to_agent", "init", "agent"),  # modules, DHCP
        ("agent_start", "agent", "agent_ready"),  # Python importing the agent
        ("task", "task", "task_done"),  # deploy or erase, read-back included
    ),
    BootDevice.DISK: (
        ("firmware", "", "disk"),  # SeaBIOS to the disk's boot sector
        ("disk_to_init", "disk", "init"),  # syslinux loading the kernel, the kernel
        ("init_to_address", "init", "address"),  # modules, DHCP on the tenant VLAN
    ),
}


class VmError(MetalnetError):
    """QEMU or its QMP client is missing, or QEMU did not start."""


def qemu_binary() -> str:
    """The QEMU system emulator, or a clear error naming the Debian packages."""
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        raise VmError(
            "qemu-system-x86_64 is missing (Debian: apt-get install qemu-system-x86 ipxe-qemu)"
        )
    return path


def require() -> None:
    """Fail early, naming what to install, when QEMU or its QMP client is missing."""
    qemu_binary()
    if importlib.util.find_spec("qemu.qmp") is None:
        raise VmError("qemu.qmp is missing: pip install 'metalnet[vm]'")


@dataclass
class BootRecord:
    """One boot as the console showed it: when it began (time.time() of power on or
    reset) and the seconds from then to each milestone (MILESTONES) seen so far."""

    device: BootDevice
    started: float
    milestones: dict[str, float] = field(default_factory=dict)

    def see(self, console: str, now: float) -> None:
        """Note the milestones `console` (this boot's output so far) shows for the first time."""
        for name, pattern in MILESTONES:
            if name not in self.milestones and pattern.search(console):
                self.milestones[name] = round(now - self.started, 2)

    def phases(self) -> dict[str, float]:
        """Seconds of each of its device's phases (PHASES) whose two milestones this boot showed."""
        at = {"": 0.0, **self.milestones}
        return {
            name: round(at[end] - at[begin], 2)
            for name, begin, end in PHASES[self.device]
            if begin in at and end in at
        }

    def summary(self) -> dict[str, object]:
        return {
            "device": str(self.device),
            "to_address_seconds": self.milestones.get("address"),
            "to_agent_seconds": self.milestones.get("agent"),
            "milestones": dict(sorted(self.milestones.items(), key=lambda item: item[1])),
            "phases": self.phases(),
        }


@dataclass(frozen=True)
class AgentRun:
    """One task as the agent logged it on the console: from taking it to reporting it
    done (download, write and read-back for a deploy; write and read-back for an erase)."""

    kind: str
    bytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0


def agent_runs(console: str) -> list[AgentRun]:
    """The agent's finished tasks in a console log, timed by the agent's own clock."""
    taken: dict[str, tuple[str, datetime]] = {}
    runs = []
    for stamp, task, kind, size in AGENT_TASK_LINE.findall(console):
        moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        if kind:
            taken[task] = (kind, moment)
        elif task in taken:
            kind, started = taken.pop(task)
            runs.append(AgentRun(kind, int(size), (moment - started).total_seconds()))
    return runs


@dataclass
class VmMachine:
    """One QEMU machine: NIC `tap` with `mac`, raw `disk`, state files under `workdir`.

    Power actions run on the node's own timeline (the lab's data plane worker), so
    they never overlap; `lock` guards the process for readers on other threads.
    """

    name: str
    mac: str
    disk: Path
    workdir: Path
    tap: str = ""  # set by the data plane, which creates the tap
    process: subprocess.Popen[bytes] | None = None
    booted_from: BootDevice | None = None
    boot_offset: int = 0  # console log size when the current boot began
    boot_started: float = 0.0
    boots: list[BootRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def console_log(self) -> Path:
        return self.workdir / f"{self.name}.console.log"

    @property
    def console_socket(self) -> Path:
        return self.workdir / f"{self.name}.console.sock"

    @property
    def qemu_log(self) -> Path:
        return self.workdir / f"{self.name}.qemu.log"

    @property
    def qmp_socket(self) -> Path:
        return self.workdir / f"{self.name}.qmp.sock"

    # Power, as the BMC's callback asks ------------------------------------------------

    def power(self, event: PowerEvent, device: BootDevice | None) -> str:
        """Apply a BMC power event; what the machine now runs, for the lab's record."""
        if event == PowerEvent.POWER_OFF:
            self.stop()
            return "off"
        assert device is not None  # power on and reset always name a boot device
        if event == PowerEvent.REBOOT and self.running and device == self.booted_from:
            self._mark_boot(device)
            self._qmp("system_reset")
        else:
            self.stop()
            self.start(device)
        return f"vm booting from {device}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, device: BootDevice) -> None:
        """Start QEMU booting `device` (network: the NIC's iPXE ROM; disk: virtio disk)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for stale in (self.qmp_socket, self.console_socket):
            stale.unlink(missing_ok=True)
        self._mark_boot(device)
        # The monitor socket is bound here and handed to QEMU, so it accepts from the
        # start: a connection made before QEMU is ready waits in the listen backlog.
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as monitor,
            self.qemu_log.open("ab") as output,
        ):
            monitor.bind(str(self.qmp_socket))
            monitor.listen()
            with self.lock:
                self.process = subprocess.Popen(
                    self.argv(device, monitor.fileno()),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=output,
                    pass_fds=(monitor.fileno(),),
                )
        try:
            self._qmp("query-status")
        except (*_qmp_errors(), EOFError) as exc:
            self.stop()
            tail = self.qemu_log.read_text(errors="replace")[-500:]
            raise VmError(f"QEMU for {self.name} did not start ({exc}): {tail}") from None
        log.info("vm %s: started from %s (pid %d)", self.name, device, self.process.pid)

    def argv(self, device: BootDevice, monitor_fd: int) -> list[str]:
        """The QEMU command line: TCG, SeaBIOS, virtio NIC on the tap, virtio raw disk,
        the QMP monitor on the listening socket `monitor_fd`."""
        order = "n" if device == BootDevice.PXE else "c"
        console = f"socket,id=console,path={self.console_socket},server=on,wait=off"
        console += f",logfile={self.console_log},logappend=on"
        return [
            qemu_binary(), "-name", self.name, "-accel", "tcg", "-m", str(MEMORY_MIB),
            "-display", "none", "-nodefaults", "-boot", f"order={order}",
            "-chardev", console, "-serial", "chardev:console",
            "-fw_cfg", f"name=etc/sercon-port,file={self.sercon_file()}",
            "-chardev", f"socket,id=qmp,fd={monitor_fd},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            "-netdev", f"tap,id=nic,ifname={self.tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=nic,mac={self.mac}",
            "-drive", f"file={self.disk},format=raw,if=virtio,cache=writethrough",
        ]  # fmt: skip

    def sercon_file(self) -> Path:
        """The file QEMU hands SeaBIOS as `etc/sercon-port` (see SERCON_PORT)."""
        path = self.workdir / "sercon-port"
        if not path.exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            path.write_bytes(SERCON_PORT.to_bytes(2, "little"))
        return path

    def stop(self) -> None:
        """Power cut: QMP `quit`, then wait for the process (killed if it lingers)."""
        with self.lock:
            process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                self._qmp("quit")
            except _qmp_errors() as exc:
                log.warning("vm %s: QMP quit failed (%s), killing QEMU", self.name, exc)
                process.kill()
            try:
                process.wait(QUIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.booted_from = None
        log.info("vm %s: powered off", self.name)

    def _mark_boot(self, device: BootDevice) -> None:
        self.booted_from = device
        self.boot_offset = self.console_log.stat().st_size if self.console_log.exists() else 0
        self.boot_started = time.monotonic()
        record = BootRecord(device, time.time())
        self.boots.append(record)
        threading.Thread(target=self._watch, args=(record,), daemon=True).start()

    def _watch(self, record: BootRecord) -> None:
        """Note this boot's milestones as its console shows them (polling the log every
        WATCH_SECONDS, so each time is late by at most that), until its last one, another
        boot begins or the machine is off."""
        last = PHASES[record.device][-1][2]
        while self.boots[-1] is record and self.booted_from is not None:
            record.see(ESCAPE.sub("", self.console_since_boot()), time.time())
            if last in record.milestones:
                return
            time.sleep(WATCH_SECONDS)

    def _qmp(self, command: str) -> object:
        """One QMP command over a fresh connection (QEMU's monitor socket)."""
        return asyncio.run(_execute(str(self.qmp_socket), command, self.name))

    # What the machine shows --------------------------------------------------------------

    def console_since_boot(self) -> str:
        """The serial console's output since the current boot began."""
        if not self.console_log.exists():
            return ""
        with self.console_log.open("rb") as console:
            console.seek(self.boot_offset)
            return console.read().decode(errors="replace")

    def booted(self) -> bool:
        """Whether the running OS finished booting: the ramdisk started its agent, the
        tenant OS opened its shell (its console prints the line)."""
        done = AGENT_LINE if self.booted_from == BootDevice.PXE else SHELL_LINE
        return self.running and done in self.console_since_boot()

    def address(self) -> ipaddress.IPv4Address | None:
        """The address the running OS reported on its console after DHCP, if any."""
        if not self.running:
            return None
        found = ADDRESS_LINE.findall(self.console_since_boot())
        return ipaddress.IPv4Address(found[-1]) if found else None

    def ping_all(self, targets: Sequence[str], timeout: float) -> dict[str, bool]:
        """From inside the running OS (the demo image's shell on its serial console,
        spoken through `SerialConsole`): `ping_command`; which targets answered. Empty
        if no shell answered."""
        deadline = time.monotonic() + CONSOLE_PROMPT_SECONDS
        while SHELL_LINE not in self.console_since_boot():
            if time.monotonic() > deadline or not self.running:
                return {}
            time.sleep(WATCH_SECONDS)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as link:
            try:
                link.connect(str(self.console_socket))
                console = SerialConsole(link.makefile("rb"), link.makefile("wb"))
                output, _ = console.run(ping_command(targets), timeout)
            except (OSError, ConsoleError) as exc:
                log.info("vm %s: console command failed: %s", self.name, exc)
                return {}
            finally:
                with contextlib.suppress(OSError):
                    link.shutdown(socket.SHUT_RDWR)  # ends the console's reader thread
        return reached(output, targets)


def ping_command(targets: Sequence[str]) -> str:
    """One shell line: `ping -c1 -W1` to every target at once (each still waits its full
    second for an answer), `reached A.B.C.D` for each that answered. A subshell, so an
    interactive shell reports no background jobs."""
    ping = "(ping -c1 -W1 $ip >/dev/null 2>&1 && echo reached $ip) &"
    return f"(for ip in {' '.join(targets)}; do {ping} done; wait)"


def reached(output: str, targets: Sequence[str]) -> dict[str, bool]:
    """Which targets `ping_command`'s output says answered."""
    answered = set(REACHED_LINE.findall(output))
    return {ip: ip in answered for ip in targets}


def _qmp_errors() -> tuple[type[BaseException], ...]:
    from qemu.qmp import QMPError

    return (OSError, QMPError)


async def _execute(path: str, command: str, name: str) -> object:
    from qemu.qmp import QMPClient  # metalnet[vm]: only the VM lab needs it

    client = QMPClient(name)
    await asyncio.wait_for(client.connect(path), QMP_TIMEOUT)
    try:
        return await asyncio.wait_for(client.execute(command), QMP_TIMEOUT)
    finally:
        # After `quit` QEMU closes the monitor as it exits; qemu.qmp then reports the
        # reader's end of file from disconnect(): the expected end, not a failure.
        with contextlib.suppress(EOFError):
            await client.disconnect()
