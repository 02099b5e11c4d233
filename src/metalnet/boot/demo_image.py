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

SeaBIOS runs the MBR code, which chains to the active partition's boot sector, which
loads ldlinux.sys; syslinux reads syslinux.cfg and boots the kernel with
`console=ttyS0`.

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

Cache by content: the key hashes the initramfs tree, the kernel, the syslinux and
mtools package checksums, syslinux.cfg and this module's source; an unchanged key
copies the cached image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from metalnet.boot import debian
from metalnet.boot.initramfs import KernelParts, Tree, init_prelude, kernel_parts, write_initramfs
from metalnet.errors import InputError

TAG = "metalnet-demo"
NIC = "eth0"
PROMPT = f"{TAG}# "
# Debian's packages that lay the image out; apt resolves their versions.
LAYOUT_PACKAGES = ("syslinux", "syslinux-common", "mtools")
MBR_BIN = "usr/lib/syslinux/mbr/mbr.bin"  # in syslinux-common
SECTOR = 512
PARTITION_START = 2048  # sectors: 1 MiB, the alignment fdisk and parted use
MIB = 1 << 20
KERNEL_FILE, INITRD_FILE = "vmlinuz", "initrd.img"
VOLUME_SERIAL = "6d6e6574"  # fixed FAT serial ("mnet") so the layout does not vary

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
    layout = [debian.unpacked(deb, debs) for deb in debian.resolve_all(debs, LAYOUT_PACKAGES)]
    tree = _tree(parts)
    key = _key(tree, parts, layout)
    built = cache / "builds" / key[:16] / "demo.img"
    cached = built.is_file()
    if not cached:
        built.parent.mkdir(parents=True, exist_ok=True)
        partial = built.with_suffix(".partial")
        _write_image(partial, parts, tree, layout)
        partial.replace(built)
    staged = output.with_name(f".{output.name}.partial")
    shutil.copyfile(built, staged)
    staged.replace(output)
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
    writable = os.access(output, os.W_OK) if output.exists() else os.access(output.parent, os.W_OK)
    if not writable:
        raise InputError(f"invalid output {str(output)!r}: not writable")


def _tree(parts: KernelParts) -> Tree:
    tree = parts.base_tree(INIT)
    tree.add("etc/metalnet/udhcpc.sh", UDHCPC_HOOK.encode(), 0o755)
    return tree


def _key(tree: Tree, parts: KernelParts, layout: list[Path]) -> str:
    h = hashlib.sha256()
    for part in (tree.digest(), debian.file_digest(parts.vmlinuz).hex(), SYSLINUX_CFG):
        h.update(part.encode() + b"\0")
    for root in layout:
        h.update(root.name.encode() + b"\0")  # package_version: the .deb was checksummed
    h.update(debian.file_digest(Path(__file__)))
    return h.hexdigest()


def _write_image(path: Path, parts: KernelParts, tree: Tree, layout: list[Path]) -> None:
    """MBR, one FAT partition with the kernel, initramfs and syslinux installed in it."""
    syslinux_root, common_root, mtools_root = layout
    work = path.parent
    initrd = work / INITRD_FILE
    write_initramfs(tree, initrd)
    cfg = work / "syslinux.cfg"
    cfg.write_text(SYSLINUX_CFG)
    payload = parts.vmlinuz.stat().st_size + initrd.stat().st_size
    sectors = -(-(payload + payload // 10 + MIB) // MIB) * MIB // SECTOR  # whole MiB, 10% spare
    with path.open("wb") as image:
        image.truncate((PARTITION_START + sectors) * SECTOR)
    fat = f"{path}@@{PARTITION_START * SECTOR}"  # mtools: the file system at this offset
    # syslinux's installer runs mcopy/mattrib; both come from the unpacked mtools.
    env = {**os.environ, "PATH": f"{mtools_root / 'usr/bin'}:{os.environ.get('PATH', '')}"}
    env["MTOOLS_SKIP_CHECK"] = "1"  # no geometry check: a partition in a file has none
    mtools = mtools_root / "usr/bin"
    debian.run(
        [str(mtools / "mformat"), "-i", fat, "-T", str(sectors), "-H", str(PARTITION_START),
         "-h", "64", "-s", "32", "-N", VOLUME_SERIAL, "-v", "METALNET", "::"],
        env=env,
    )  # fmt: skip
    for source, name in ((parts.vmlinuz, KERNEL_FILE), (initrd, INITRD_FILE), (cfg, cfg.name)):
        debian.run([str(mtools / "mcopy"), "-i", fat, str(source), f"::/{name}"], env=env)
    offset = str(PARTITION_START * SECTOR)
    debian.run(
        [str(syslinux_root / "usr/bin/syslinux"), "--offset", offset, "--install", str(path)],
        env=env,
    )
    initrd.unlink()
    cfg.unlink()
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


def _chs(lba: int, heads: int = 64, per_track: int = 32) -> bytes:
    """Cylinder/head/sector of an LBA in the geometry mformat was given (-h 64 -s 32);
    cylinder in 10 bits, the high two in the sector byte's top bits."""
    cylinder, rest = divmod(lba, heads * per_track)
    head, sector = divmod(rest, per_track)
    if cylinder > 1023:
        return bytes([0xFE, 0xFF, 0xFF])  # beyond CHS: LBA only
    return bytes([head, (sector + 1) | ((cylinder >> 2) & 0xC0), cylinder & 0xFF])
