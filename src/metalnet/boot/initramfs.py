"""What every metalnet boot image is made of: Debian's kernel, a static busybox, the
kernel modules a VM or server needs (loaded in dependency order), and the initramfs
archive the kernel unpacks. The provisioning ramdisk and the demo disk image differ
only in what their /init does after the common start (`init_prelude`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from metalnet.boot import debian
from metalnet.errors import InputError

KERNEL_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
DEFAULT_MODULES = ("virtio_net", "virtio_blk", "virtio_pci")
MODULE_LIST = "etc/metalnet/modules"
GZIP_LEVEL = 6


def init_prelude(tag: str) -> str:
    """The start of every /init: busybox applets, /proc /sys /dev, then the modules
    in the order MODULE_LIST gives; `tag` prefixes its console lines."""
    return f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run
echo "{tag}: loading modules"
while read -r module; do
    insmod "/lib/modules/$module" || echo "{tag}: insmod $module failed"
done < /{MODULE_LIST}
ip link set lo up
"""


@dataclass
class Tree:
    """The initramfs's files: destination path -> a source file, bytes, or a link."""

    files: dict[str, Path | bytes] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def add(self, dest: str, source: Path | bytes, mode: int | None = None) -> None:
        self.files[dest.lstrip("/")] = source
        if mode is not None:
            self.modes[dest.lstrip("/")] = mode

    def add_tree(self, dest: str, root: Path, skip: Iterable[str] = ()) -> None:
        """Every regular file under `root` (symlinks followed, broken ones left out)."""
        skipped = set(skip)
        for directory, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in skipped)
            for name in sorted(names):
                path = Path(directory) / name
                if path.is_file():
                    self.add(f"{dest}/{path.relative_to(root)}", path)

    def digest(self) -> str:
        """SHA-256 over every path, mode, link and content: the cache key."""
        h = hashlib.sha256()
        for dest in sorted(self.files):
            source = self.files[dest]
            h.update(f"{dest}\0{self._mode(dest, source)}\0".encode())
            h.update(source if isinstance(source, bytes) else debian.file_digest(source))
        for dest, target in sorted(self.links.items()):
            h.update(f"{dest}\0->{target}\0".encode())
        return h.hexdigest()

    def _mode(self, dest: str, source: Path | bytes) -> int:
        if dest in self.modes:
            return self.modes[dest]
        if isinstance(source, Path) and os.access(source, os.X_OK):
            return 0o755
        return 0o644

    def entries(self) -> Iterator[tuple[str, int, bytes]]:
        """(path, mode, data) for directories, files and symlinks, parents first."""
        dirs = {str(p) for dest in (*self.files, *self.links) for p in Path(dest).parents}
        for directory in sorted(dirs - {"."}):
            yield directory, 0o040755, b""
        for dest in sorted(self.files):
            source = self.files[dest]
            data = source if isinstance(source, bytes) else source.read_bytes()
            yield dest, 0o100000 | self._mode(dest, source), data
        for dest, target in sorted(self.links.items()):
            yield dest, 0o120777, target.encode()


@dataclass(frozen=True)
class KernelParts:
    """Debian's kernel and static busybox, unpacked, and the modules to load in order."""

    vmlinuz: Path
    busybox: Path
    modules_root: Path
    order: list[str]  # module paths relative to modules_root, dependencies first

    @property
    def kernel_version(self) -> str:
        return self.modules_root.name

    def base_tree(self, init: str) -> Tree:
        """An initramfs with `init` as /init, busybox, and the modules with their list."""
        tree = Tree()
        tree.add("init", init.encode(), 0o755)
        tree.add(MODULE_LIST, "".join(f"{m}\n" for m in self.order).encode())
        tree.add("bin/busybox", self.busybox, 0o755)
        for module in self.order:
            tree.add(f"lib/modules/{module}", self.modules_root / module)
        for name in ("proc", "sys", "dev", "tmp", "run"):
            tree.add(f"{name}/.keep", b"")
        return tree


def kernel_parts(
    debs: Path, kernel_package: str = KERNEL_PACKAGE, modules: Iterable[str] = DEFAULT_MODULES
) -> KernelParts:
    """The kernel and busybox packages apt would install now, fetched into `debs`."""
    if not kernel_package.startswith("linux-image-"):
        raise InputError(f"invalid kernel package {kernel_package!r}: expected linux-image-*")
    kernel, busybox = debian.resolve_all(debs, [kernel_package, BUSYBOX_PACKAGE])
    kernel_root = debian.unpacked(kernel, debs)
    (modules_root,) = (kernel_root / "lib" / "modules").iterdir()
    (vmlinuz,) = (kernel_root / "boot").glob("vmlinuz-*")
    busybox_bin = debian.unpacked(busybox, debs) / "bin" / "busybox"
    return KernelParts(vmlinuz, busybox_bin, modules_root, module_order(modules_root, modules))


def modinfo_depends(ko: Path) -> list[str]:
    """The `depends=` field of a module's .modinfo ELF section (what depmod reads)."""
    data = ko.read_bytes()
    shoff = int.from_bytes(data[0x28:0x30], "little")
    shentsize = int.from_bytes(data[0x3A:0x3C], "little")
    shnum = int.from_bytes(data[0x3C:0x3E], "little")
    shstrndx = int.from_bytes(data[0x3E:0x40], "little")

    def section(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        name = int.from_bytes(data[base : base + 4], "little")
        offset = int.from_bytes(data[base + 0x18 : base + 0x20], "little")
        size = int.from_bytes(data[base + 0x20 : base + 0x28], "little")
        return name, offset, size

    _, strtab, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        if data[strtab + name :].split(b"\0", 1)[0] == b".modinfo":
            for entry in data[offset : offset + size].split(b"\0"):
                if entry.startswith(b"depends="):
                    return [d for d in entry[8:].decode().split(",") if d]
    return []


def module_order(modules_root: Path, wanted: Iterable[str]) -> list[str]:
    """Paths (relative to modules_root) of `wanted` and their dependencies, each after
    everything it depends on; built-in modules are left out."""
    by_name = {
        ko.name.removesuffix(".ko").replace("-", "_"): ko for ko in modules_root.rglob("*.ko")
    }
    builtin = {
        Path(line).name.removesuffix(".ko").replace("-", "_")
        for line in (modules_root / "modules.builtin").read_text().split()
    }
    order: list[str] = []

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in builtin or str(by_name.get(name)) in order:
            return
        if name not in by_name:
            raise InputError(
                f"invalid kernel module {name!r}: Linux {modules_root.name} neither builds it "
                "in nor ships it"
            )
        for dependency in modinfo_depends(by_name[name]):
            visit(dependency)
        order.append(str(by_name[name]))

    for name in wanted:
        visit(name)
    return [str(Path(path).relative_to(modules_root)) for path in order]


def write_initramfs(tree: Tree, path: Path) -> None:
    """The tree as a gzip-compressed newc cpio archive (what the kernel unpacks).

    Format: the kernel's Documentation/driver-api/early-userspace/buffer-format.rst.
    Timestamps are zero so the same tree gives the same bytes.
    """
    with (
        path.open("wb") as raw,
        gzip.GzipFile("", "wb", GZIP_LEVEL, raw, mtime=0) as out,  # no name, no time
    ):
        for ino, (name, mode, data) in enumerate(tree.entries(), 1):
            _cpio_entry(out, ino, name, mode, data)
        _cpio_entry(out, 0, "TRAILER!!!", 0, b"")


def _cpio_entry(out: gzip.GzipFile, ino: int, name: str, mode: int, data: bytes) -> None:
    encoded = name.encode() + b"\0"
    nlink = 2 if mode & 0o040000 else 1
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
    out.write(header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4))
    out.write(data + b"\0" * (-len(data) % 4))
