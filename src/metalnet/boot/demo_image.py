"""`metalnet image build-demo`: a small tenant OS on a bootable raw disk image.

The lab deploys it to a node's disk, so the node boots its tenant OS from its own disk
and takes its tenant address by DHCP. It is made from Debian's packages, without root
or loop mounts: the provisioning ramdisk's kernel, busybox and virtio modules
(`initramfs.kernel_parts`), syslinux's MBR code and installer (`syslinux`,
`syslinux-common`) and mtools to write the FAT file system inside the image file.

Disk layout (BIOS boot):

    sector 0        syslinux's mbr.bin + one active FAT partition (type from its BPB)
    sectors 2048-   FAT: ldlinux.sys (boot sector patched by `syslinux --offset`),
                    ldlinux.c32, syslinux.cfg, vmlinuz, initrd.img

SeaBIOS runs the MBR code, which loads the boot sector of the partition marked active
(https://wiki.syslinux.org/wiki/index.php?title=Mbr: mbr.bin is 440 bytes, the
partition table follows at byte 446), which loads ldlinux.sys; syslinux reads
syslinux.cfg and boots the kernel with `console=ttyS0`.

Serial-console contract (ttyS0, 115200 8N1; what a lab reads and writes):

1. Zero or more `metalnet-demo: no address` lines, about every 9 s, while no DHCP
   server answers on eth0 (the node's port may still be moving to its VLAN).
2. Exactly one `metalnet-demo: address A.B.C.D/NN` line once eth0 has a lease
   (udhcpc keeps renewing it in the background; the kernel answers ping).
3. `metalnet-demo: shell` then the prompt `metalnet-demo# ` of an interactive root
   shell (busybox sh) on ttyS0. Send a command only after the prompt, as one line
   ending in "\\n", followed by `; echo rc=$?`, e.g. `ping -c1 -W1 10.0.2.2; echo rc=$?`;
   its exit status is the first following line matching `^rc=([0-9]+)$` (the tty
   echoes the typed line, which holds `rc=$?` and so never matches). Lines end in
   "\\r\\n". If the shell exits, a new one starts.

`SerialConsole` speaks this contract over any byte stream pair (QEMU's stdio pipes,
a socket's makefile), e.g.::

    console = SerialConsole(qemu.stdout, qemu.stdin)
    address = console.wait_for_address(300)        # "10.0.2.15/24"
    output, status = console.run("ping -c1 -W1 10.0.2.2", 60)

Cache by content: the key hashes the initramfs tree, the kernel, the syslinux and
mtools package checksums, syslinux.cfg and this module's source; an unchanged key
copies the cached image.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import platformdirs

from metalnet.boot import debian
from metalnet.boot.initramfs import KernelParts, Tree, init_prelude, kernel_parts, write_initramfs
from metalnet.errors import InputError, MetalnetError

T = TypeVar("T")

TAG = "metalnet-demo"
NIC = "eth0"
PROMPT = f"{TAG}# "
# Debian's packages that lay the image out; apt resolves their versions.
LAYOUT_PACKAGES = ("syslinux", "syslinux-common", "mtools")
MBR_BIN = "usr/lib/syslinux/mbr/mbr.bin"  # in syslinux-common
SECTOR = 512
PARTITION_START = 2048  # sectors: 1 MiB, the alignment fdisk and parted use
MIB = 1 << 20
HEADS, PER_TRACK = 64, 32  # the disk geometry the FAT and the MBR's CHS fields state
KERNEL_FILE, INITRD_FILE = "vmlinuz", "initrd.img"
# A fixed FAT volume serial ("mnet") and file times (mtools honours SOURCE_DATE_EPOCH;
# FAT's epoch is 1980-01-01): the same inputs give the same image, byte for byte.
VOLUME_SERIAL = "6d6e6574"
FAT_EPOCH = "315532800"

INIT = (
    init_prelude(TAG)
    + f"""hostname {TAG}
until udhcpc -i {NIC} -s /etc/metalnet/udhcpc.sh -t 4 -T 2 -n >/dev/null 2>&1; do
    echo "{TAG}: no address"
    sleep 1
done
echo "{TAG}: address $(cat /run/address)"
echo "{TAG}: shell"
export PS1='{PROMPT}' HOME=/root
mkdir -p /root
while true; do setsid cttyhack sh; done
"""
)

# busybox udhcpc's hook: $ip, $mask (prefix length), $router as udhcpc sets them.
UDHCPC_HOOK = """#!/bin/sh
case "$1" in
    deconfig) ip -4 addr flush dev "$interface"; ip link set dev "$interface" up ;;
    bound|renew)
        ip addr replace "$ip/$mask" dev "$interface"
        [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
        echo "$ip/$mask" > /run/address
        ;;
esac
exit 0
"""

# Syslinux's configuration keywords: https://wiki.syslinux.org/wiki/index.php?title=Config
# (SERIAL port baud; PROMPT 0 with TIMEOUT 0 boots DEFAULT at once; LINUX, INITRD, APPEND).
SYSLINUX_CFG = f"""SERIAL 0 115200
DEFAULT demo
PROMPT 0
TIMEOUT 0
LABEL demo
    LINUX /{KERNEL_FILE}
    INITRD /{INITRD_FILE}
    APPEND console=ttyS0,115200 quiet
"""


@dataclass(frozen=True)
class DemoImage:
    """The image `build_demo_image` wrote, and how it was made."""

    path: Path
    sha256: str
    size_bytes: int
    key: str
    cached: bool
    seconds: float
    kernel_version: str


def default_cache() -> Path:
    return Path(platformdirs.user_cache_dir("metalnet")) / "demo-image"


def build_demo_image(output: Path, cache_dir: Path | None = None) -> DemoImage:
    """Build (or copy from the cache) the bootable demo disk image to the file `output`."""
    started = time.monotonic()
    check_output(output)
    cache = cache_dir or default_cache()
    debs = cache / "debs"
    parts = kernel_parts(debs)
    layout_debs = debian.resolve_all(debs, LAYOUT_PACKAGES)
    layout = [debian.unpacked(deb, debs) for deb in layout_debs]
    tree = _tree(parts)
    key = _key(tree, parts, layout_debs)
    built = cache / "builds" / key[:16] / "demo.img"
    cached = built.is_file()
    if not cached:
        built.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=built.parent) as work:  # concurrent builds
            _write_image(Path(work) / built.name, parts, tree, layout)
            (Path(work) / built.name).replace(built)
    staged = output.with_name(f".{output.name}.{os.getpid()}.partial")
    try:
        shutil.copyfile(built, staged)
        staged.replace(output)
    finally:
        staged.unlink(missing_ok=True)
    return DemoImage(
        output,
        debian.file_digest(output).hex(),
        output.stat().st_size,
        key,
        cached,
        time.monotonic() - started,
        parts.kernel_version,
    )


def check_output(output: Path) -> None:
    """Refuse an output path the image cannot be written to, before building anything."""
    if output.is_dir():
        raise InputError(f"invalid output {str(output)!r}: it is a directory")
    if not output.parent.is_dir():
        raise InputError(f"invalid output {str(output)!r}: {output.parent} is not a directory")
    if not os.access(output.parent, os.W_OK):  # the image is staged there, then renamed
        raise InputError(f"invalid output {str(output)!r}: {output.parent} is not writable")


def _tree(parts: KernelParts) -> Tree:
    tree = parts.base_tree(INIT)
    tree.add("etc/metalnet/udhcpc.sh", UDHCPC_HOOK.encode(), 0o755)
    return tree


def _key(tree: Tree, parts: KernelParts, layout_debs: list[debian.Deb]) -> str:
    h = hashlib.sha256()
    kernel = debian.file_digest(parts.vmlinuz).hex()
    for part in (tree.digest(), kernel, SYSLINUX_CFG, *(deb.sha256 for deb in layout_debs)):
        h.update(part.encode() + b"\0")
    h.update(debian.file_digest(Path(__file__)))
    return h.hexdigest()


def _write_image(path: Path, parts: KernelParts, tree: Tree, layout: list[Path]) -> None:
    """MBR, one FAT partition with the kernel, initramfs and syslinux installed in it."""
    syslinux_root, common_root, mtools_root = layout
    initrd = path.parent / INITRD_FILE  # path's directory is the build's own
    write_initramfs(tree, initrd)
    cfg = path.parent / "syslinux.cfg"
    cfg.write_text(SYSLINUX_CFG)
    payload = parts.vmlinuz.stat().st_size + initrd.stat().st_size
    sectors = -(-(payload + payload // 10 + MIB) // MIB) * MIB // SECTOR  # whole MiB, 10% spare
    with path.open("wb") as image:
        image.truncate((PARTITION_START + sectors) * SECTOR)
    fat = f"{path}@@{PARTITION_START * SECTOR}"  # mtools: the file system at this offset
    mtools = mtools_root / "usr/bin"
    # syslinux's installer runs mcopy/mattrib; both come from the unpacked mtools.
    env = {**os.environ, "PATH": f"{mtools}:{os.environ.get('PATH', '')}"}
    env["MTOOLS_SKIP_CHECK"] = "1"  # no geometry check: a partition in a file has none
    env["SOURCE_DATE_EPOCH"] = FAT_EPOCH
    debian.run(
        [str(mtools / "mformat"), "-i", fat, "-T", str(sectors), "-H", str(PARTITION_START),
         "-h", str(HEADS), "-s", str(PER_TRACK), "-N", VOLUME_SERIAL, "-v", "METALNET", "::"],
        env=env,
    )  # fmt: skip
    for source, name in ((parts.vmlinuz, KERNEL_FILE), (initrd, INITRD_FILE), (cfg, cfg.name)):
        debian.run([str(mtools / "mcopy"), "-i", fat, str(source), f"::/{name}"], env=env)
    offset = str(PARTITION_START * SECTOR)
    debian.run(
        [str(syslinux_root / "usr/bin/syslinux"), "--offset", offset, "--install", str(path)],
        env=env,
    )
    with path.open("r+b") as image:
        image.seek(PARTITION_START * SECTOR)
        boot_sector = image.read(SECTOR)
        image.seek(0)
        mbr_code = (common_root / MBR_BIN).read_bytes()
        image.write(master_boot_record(mbr_code, PARTITION_START, sectors, fat_type(boot_sector)))


def fat_type(boot_sector: bytes) -> int:
    """The MBR partition type for the FAT a boot sector describes: its BPB names the FAT
    at offset 54 (FAT12/16) or 82 (FAT32) (Microsoft's "FAT: General Overview of
    On-Disk Format", BS_FilSysType); LBA-addressed types 0x0e and 0x0c."""
    if boot_sector[82:87] == b"FAT32":
        return 0x0C
    if boot_sector[54:59] == b"FAT16":
        return 0x0E
    if boot_sector[54:59] == b"FAT12":
        return 0x01
    raise debian.BuildError("mformat wrote no FAT boot sector")


def master_boot_record(code: bytes, start: int, sectors: int, kind: int) -> bytes:
    """Sector 0: boot code, then one active partition record, then the signature.

    Layout from the UEFI specification, section 5.2.1 "Legacy Master Boot Record",
    tables "Legacy MBR" and "Legacy MBR Partition Record": boot code in bytes 0-439,
    disk signature 440-443, four 16-byte partition records from 446, 0x55 0xAA at
    510; a record is BootIndicator (0x80 = active, what syslinux's mbr.bin boots),
    StartingCHS, OSType, EndingCHS, StartingLBA, SizeInLBA (little-endian).
    """
    if len(code) > 440:
        raise debian.BuildError(f"MBR boot code is {len(code)} bytes; at most 440 fit")
    record = (
        bytes([0x80])
        + _chs(start)
        + bytes([kind])
        + _chs(start + sectors - 1)
        + start.to_bytes(4, "little")
        + sectors.to_bytes(4, "little")
    )
    disk_signature = bytes.fromhex(VOLUME_SERIAL)
    sector = code.ljust(440, b"\0") + disk_signature + b"\0\0" + record
    return sector.ljust(510, b"\0") + b"\x55\xaa"


def _chs(lba: int) -> bytes:
    """Cylinder/head/sector of an LBA in the geometry mformat was given; cylinder in
    10 bits, the high two in the sector byte's top bits."""
    cylinder, rest = divmod(lba, HEADS * PER_TRACK)
    head, sector = divmod(rest, PER_TRACK)
    if cylinder > 1023:
        return bytes([0xFE, 0xFF, 0xFF])  # beyond CHS: LBA only
    return bytes([head, (sector + 1) | ((cylinder >> 2) & 0xC0), cylinder & 0xFF])


class ConsoleError(MetalnetError):
    """The demo OS's console did not show what the contract promises in time."""


class SerialConsole:
    """The demo OS's serial console: a thread keeps everything `reader` yields; `expect`
    waits, until a deadline, for a complete line matching a pattern.

    Only complete lines are matched: a line still arriving could match a pattern
    ending in `$` with a part of its text (an address cut after its first digit).
    The prompt, which no newline ends, is waited for by its exact text instead.
    """

    def __init__(self, reader: io.BufferedIOBase, writer: io.BufferedIOBase) -> None:
        self.reader, self.writer = reader, writer
        self.text = ""  # everything read so far, "\r" removed
        self.position = 0  # where the next wait starts looking
        self.closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while chunk := self.reader.read1(4096):
                with self._changed:
                    self.text += chunk.decode(errors="replace").replace("\r", "")
                    self._changed.notify_all()
        except OSError:  # a pseudo-terminal's reader gets EIO when the other side hangs up
            pass
        except ValueError:  # the owner closed the stream (QEMU's pipes after it ended)
            pass
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def expect(self, pattern: str, seconds: float) -> re.Match[str]:
        """The first complete line after the previous wait that `pattern` matches
        (`^` and `$` anchor at the line's ends; the match excludes the newline)."""
        compiled = re.compile(pattern, re.MULTILINE)
        return self._wait(lambda: self._next_line(compiled), repr(pattern), seconds)

    def expect_prompt(self, seconds: float) -> None:
        """Wait for the shell's prompt after the previous wait."""
        self._wait(self._prompt, repr(PROMPT), seconds)

    def wait_for_address(self, seconds: float) -> str:
        """The address/prefix the OS took by DHCP, once its shell prompt is up."""
        found = self.expect(rf"^{TAG}: address (\S+)$", seconds)
        self.expect_prompt(seconds)
        return found.group(1)

    def run(self, command: str, seconds: float) -> tuple[str, int]:
        """Type `command` at the prompt; its output and exit status, prompt back."""
        self.writer.write(f"{command}; echo rc=$?\n".encode())
        self.writer.flush()
        self.expect(r"rc=\$\?$", seconds)  # the line the terminal echoed
        start = self.position
        status = self.expect(r"^rc=([0-9]+)$", seconds)
        self.expect_prompt(seconds)
        return self.text[start : status.start()], int(status.group(1))

    def _next_line(self, compiled: re.Pattern[str]) -> re.Match[str] | None:
        while (end := self.text.find("\n", self.position)) >= 0:
            start, self.position = self.position, end + 1
            if found := compiled.search(self.text, start, end):
                return found
        return None

    def _prompt(self) -> bool | None:
        at = self.text.find(PROMPT, self.position)
        if at < 0:
            return None
        self.position = at + len(PROMPT)
        return True

    def _wait(self, find: Callable[[], T | None], what: str, seconds: float) -> T:
        deadline = time.monotonic() + seconds
        with self._changed:
            while (found := find()) is None:
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    why = "the console closed" if self.closed else f"{seconds:g}s passed"
                    raise ConsoleError(f"no {what} before {why}: {self.text[-2000:]!r}")
                self._changed.wait(left)
            return found
