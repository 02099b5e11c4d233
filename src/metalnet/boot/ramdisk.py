"""`metalnet ramdisk build`: the provisioning ramdisk's kernel and initramfs.

Made from Debian's packages: the kernel from `linux-image-cloud-amd64` and a static
busybox from `busybox-static` (both fetched with `apt-get download`, verified against
the archive's SHA-256), and Debian's own Python 3.11 interpreter and standard library
as installed on this host (`python3.11-minimal`, `libpython3.11-stdlib`) with the
shared libraries `ldd` names for them. The agent's few third-party packages (httpx,
pydantic, typer and what they import) and the metalnet package come from the Python
environment that runs the build, so the ramdisk runs the very code that was tested.

Why copy an interpreter instead of debootstrapping a Debian root: the ramdisk needs
no package manager, init system or shell beyond busybox, so the copy is a few tens of
MB instead of a few hundred, builds in seconds without root or a mirror beyond the
two .deb files, and cannot drift from the agent's tested dependencies.

The initramfs's /init mounts /proc, /sys and /dev, loads the NIC and disk modules
(dependencies first, as modules.dep lists them), gets an address with busybox
udhcpc, then runs `python3 -m metalnet.boot.ramdisk_agent`, which reads the agent's
settings from the kernel command line.

Cache by content: the key hashes every input (the .deb checksums, every file copied,
the module list and this builder's own source); an unchanged key reuses the cached
kernel and initramfs, so a rebuild costs the hashing and a copy.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import platformdirs

import metalnet
from metalnet.boot import ipxe
from metalnet.errors import InputError, MetalnetError

KERNEL_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
DEFAULT_MODULES = ("virtio_net", "virtio_blk", "virtio_pci")
PYTHON = Path("/usr/bin/python3.11")  # Debian's python3.11-minimal
STDLIB = Path("/usr/lib/python3.11")
SITE = "usr/lib/python3/dist-packages"  # on Debian's sys.path
STDLIB_SKIP = {
    "test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data",
    "config-3.11-x86_64-linux-gnu", "venv", "distutils", "unittest",
}  # fmt: skip
# What the agent imports, found by importing it in the building interpreter.
AGENT_IMPORTS = "import metalnet.boot.ramdisk_agent, httpx; httpx.Client()"
SO = re.compile(r"\.so(\.[0-9]+)*$")  # shared objects, whose libraries ldd lists
COMMAND_TIMEOUT_SECONDS = 600
GZIP_LEVEL = 6

INIT = """#!/bin/busybox sh
# metalnet provisioning ramdisk: modules, DHCP, then the agent.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run
echo "metalnet ramdisk: loading modules"
while read -r module; do
    insmod "/lib/modules/$module" || echo "metalnet ramdisk: insmod $module failed"
done < /etc/metalnet/modules
ip link set lo up
nic=""
for attempt in $(seq 1 50); do
    for path in /sys/class/net/*; do
        name=${path##*/}
        [ "$name" = lo ] || { nic=$name; break; }
    done
    [ -n "$nic" ] && break
    sleep 0.2
done
echo "metalnet ramdisk: DHCP on ${nic:-no NIC}"
udhcpc -i "$nic" -s /etc/metalnet/udhcpc.sh -t 20 -T 3 -n
echo "metalnet ramdisk: starting the agent"
python3 -m metalnet.boot.ramdisk_agent
echo "metalnet ramdisk: agent exited with $?"
while true; do sleep 3600; done
"""

UDHCPC_HOOK = """#!/bin/sh
case "$1" in
    deconfig) ip -4 addr flush dev "$interface"; ip link set dev "$interface" up ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/$mask" dev "$interface"
        [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
        : > /etc/resolv.conf
        for server in $dns; do echo "nameserver $server" >> /etc/resolv.conf; done
        echo "metalnet ramdisk: address $ip/$mask on $interface"
        ;;
esac
exit 0
"""


class RamdiskError(MetalnetError):
    """The ramdisk could not be built; the message says which input was missing."""


@dataclass(frozen=True)
class Deb:
    """One Debian package at the version apt would install, with its archive checksum."""

    package: str
    version: str
    sha256: str


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
            h.update(source if isinstance(source, bytes) else _file_digest(source))
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


def _file_digest(path: Path) -> bytes:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS
        )
    except FileNotFoundError:
        raise RamdiskError(f"{argv[0]} is not installed") from None
    if result.returncode != 0:
        raise RamdiskError(f"{' '.join(argv)}: {result.stderr.strip() or 'failed'}")
    return result.stdout


# Debian packages ------------------------------------------------------------------------


def resolve_all(cache: Path, kernel_package: str) -> tuple[Deb, Deb]:
    """The kernel and busybox packages apt would install now.

    Asking apt-cache costs seconds; its answer can only change when the package
    lists, dpkg's status or apt's settings change, so it is kept under their
    fingerprint and a rebuild with nothing changed asks nothing.
    """
    saved = cache / "resolved.json"
    fingerprint = f"{kernel_package} {_apt_fingerprint()}"
    if saved.exists():
        data = json.loads(saved.read_text())
        if data["fingerprint"] == fingerprint:
            kernel, busybox = (Deb(**d) for d in data["debs"])
            return kernel, busybox
    kernel, busybox = resolve(kernel_package), resolve(BUSYBOX_PACKAGE)
    cache.mkdir(parents=True, exist_ok=True)
    debs = [kernel.__dict__, busybox.__dict__]
    saved.write_text(json.dumps({"fingerprint": fingerprint, "debs": debs}))
    return kernel, busybox


def _apt_fingerprint() -> str:
    roots = (Path("/var/lib/apt/lists"), Path("/etc/apt"), Path("/var/lib/dpkg/status"))
    paths = [p for root in roots for p in ([root] if root.is_file() else root.rglob("*"))]
    stats = [(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths if p.is_file()]
    return hashlib.sha256(repr(sorted(stats)).encode()).hexdigest()


def resolve(package: str) -> Deb:
    """The candidate version of `package` (following a kernel metapackage to its image)."""
    fields = _show(package)
    first = fields.get("Depends", "").split(",")[0].split()
    if package.startswith("linux-image-") and first and first[0].startswith("linux-image-"):
        fields = _show(first[0])
    return Deb(fields["Package"], fields["Version"], fields["SHA256"])


def _show(package: str) -> dict[str, str]:
    try:
        text = _run(["apt-cache", "show", "--no-all-versions", package])
    except RamdiskError:
        raise InputError(f"invalid package {package!r}: apt-cache does not know it") from None
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and not line.startswith(" "):
            fields[key] = value
    if "SHA256" not in fields:
        raise RamdiskError(f"apt-cache knows no package {package} (run apt-get update)")
    return fields


def fetch(deb: Deb, cache: Path) -> Path:
    """The .deb file, downloaded once into `cache` and checked against the archive."""
    path = cache / f"{deb.package}_{deb.version}.deb"
    if path.exists() and _file_digest(path).hex() == deb.sha256:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        os.chmod(tmp, 0o755)  # apt's sandbox user must be able to write here
        _run(["apt-get", "download", "-q", f"{deb.package}={deb.version}"], cwd=Path(tmp))
        (downloaded,) = Path(tmp).glob("*.deb")
        if _file_digest(downloaded).hex() != deb.sha256:
            raise RamdiskError(f"{downloaded.name}: SHA-256 differs from the archive's")
        downloaded.replace(path)
    return path


def unpack(deb_file: Path, cache: Path) -> Path:
    """The package's files, extracted once next to the .deb."""
    target = cache / deb_file.stem
    if not target.is_dir():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            _run(["dpkg-deb", "-x", str(deb_file), tmp])
            Path(tmp).rename(target)
    return target


# Kernel modules ---------------------------------------------------------------------


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


# Python runtime ---------------------------------------------------------------------


def agent_packages() -> list[tuple[str, Path]]:
    """(destination, source) of every file of the distributions the agent imports."""
    probe = (
        "import json, sys, importlib.metadata as md;"
        "before = set(sys.modules);"  # what site's .pth files loaded is not the agent's
        f"{AGENT_IMPORTS};"
        "tops = {m.split('.')[0] for m in set(sys.modules) - before};"
        "dists = md.packages_distributions();"
        "print(json.dumps(sorted({d for t in tops for d in dists.get(t, ())} - {'metalnet'})))"
    )
    names = json.loads(_run([sys.executable, "-c", probe]))
    files = []
    for name in names:
        dist = metadata.distribution(name)
        for entry in dist.files or ():
            source = Path(str(dist.locate_file(entry))).resolve()
            if source.is_file() and "__pycache__" not in entry.parts and ".." not in entry.parts:
                files.append((f"{SITE}/{entry}", source))
    return files


def shared_libraries(binaries: Iterable[Path]) -> dict[str, Path]:
    """Library path (as the dynamic loader looks it up) -> file, for all binaries at once."""
    libraries: dict[str, Path] = {}
    for line in _run(["ldd", *map(str, binaries)]).splitlines():
        words = line.split()
        if not words or words[0].endswith(":"):  # "FILE:" header, one per binary
            continue
        path = words[2] if len(words) > 2 and words[1] == "=>" else words[0]
        if path.startswith("/") and path not in libraries:
            libraries[path] = Path(path).resolve()
    return libraries


# The build --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ramdisk:
    """What `build` made and how long it took."""

    kernel: Path
    initrd: Path
    key: str
    cached: bool
    seconds: float
    kernel_version: str
    initrd_bytes: int
    kernel_bytes: int
    modules: list[str]

    def manifest(self) -> dict[str, object]:
        return {
            "key": self.key,
            "kernel_version": self.kernel_version,
            "kernel_bytes": self.kernel_bytes,
            "initrd_bytes": self.initrd_bytes,
            "modules": self.modules,
            "python": str(PYTHON),
        }


def default_cache() -> Path:
    return Path(platformdirs.user_cache_dir("metalnet")) / "ramdisk"


def build(
    output: Path,
    modules: Iterable[str] = DEFAULT_MODULES,
    cache: Path | None = None,
    kernel_package: str = KERNEL_PACKAGE,
) -> Ramdisk:
    """Build (or reuse from the cache) the kernel and initramfs into `output`."""
    started = time.monotonic()
    cache = cache or default_cache()
    if not kernel_package.startswith("linux-image-"):
        raise InputError(f"invalid kernel package {kernel_package!r}: expected linux-image-*")
    if not PYTHON.is_file():
        raise RamdiskError(f"{PYTHON} is missing (Debian: apt-get install python3.11-minimal)")
    debs = cache / "debs"
    kernel, busybox = resolve_all(debs, kernel_package)
    kernel_root = unpack(fetch(kernel, debs), debs)
    busybox_root = unpack(fetch(busybox, debs), debs)
    (modules_root,) = (kernel_root / "lib" / "modules").iterdir()
    (vmlinuz,) = (kernel_root / "boot").glob("vmlinuz-*")
    order = module_order(modules_root, modules)
    tree = _tree(busybox_root, modules_root, order)
    key = hashlib.sha256(f"{tree.digest()}\0{_file_digest(vmlinuz).hex()}".encode()).hexdigest()
    built = cache / "builds" / key[:16]
    cached = (built / ipxe.INITRD).is_file()
    if not cached:
        built.mkdir(parents=True, exist_ok=True)
        partial = built / (ipxe.INITRD + ".partial")
        write_initramfs(tree, partial)
        shutil.copyfile(vmlinuz, built / ipxe.KERNEL)
        partial.replace(built / ipxe.INITRD)
    output.mkdir(parents=True, exist_ok=True)
    for name in (ipxe.KERNEL, ipxe.INITRD):
        shutil.copyfile(built / name, output / name)
    result = Ramdisk(
        output / ipxe.KERNEL,
        output / ipxe.INITRD,
        key,
        cached,
        time.monotonic() - started,
        modules_root.name,
        (output / ipxe.INITRD).stat().st_size,
        (output / ipxe.KERNEL).stat().st_size,
        [Path(m).name for m in order],
    )
    (output / "ramdisk.json").write_text(json.dumps(result.manifest(), indent=2) + "\n")
    return result


def _tree(busybox_root: Path, modules_root: Path, order: list[str]) -> Tree:
    tree = Tree()
    tree.add("init", INIT.encode(), 0o755)
    tree.add("etc/metalnet/udhcpc.sh", UDHCPC_HOOK.encode(), 0o755)
    tree.add("etc/metalnet/modules", "".join(f"{m}\n" for m in order).encode())
    tree.add("bin/busybox", busybox_root / "bin" / "busybox", 0o755)
    for module in order:
        tree.add(f"lib/modules/{module}", modules_root / module)
    tree.add(str(PYTHON), PYTHON, 0o755)
    tree.links["usr/bin/python3"] = PYTHON.name
    tree.add_tree(str(STDLIB), STDLIB, skip=STDLIB_SKIP | {"site-packages", "dist-packages"})
    for dest, source in agent_packages():
        tree.add(dest, source)
    package = Path(metalnet.__file__).parent
    tree.add_tree(f"{SITE}/metalnet", package, skip={"__pycache__"})
    binaries = [PYTHON, *(s for d, s in tree.files.items() if isinstance(s, Path) and SO.search(d))]
    for path, source in shared_libraries(binaries).items():
        tree.add(path, source)
    for name in ("proc", "sys", "dev", "tmp", "run"):
        tree.add(f"{name}/.keep", b"")
    return tree


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
