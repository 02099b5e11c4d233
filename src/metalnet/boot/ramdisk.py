"""`metalnet ramdisk build`: the provisioning ramdisk's kernel and initramfs.

Made from Debian's packages: the kernel from `linux-image-cloud-amd64` and a static
busybox from `busybox-static` (`initramfs.kernel_parts`, shared with the demo disk
image: fetched with `apt-get download`, verified against the archive's SHA-256), and
Debian's own Python 3.11 interpreter and standard library
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
kernel and initramfs, so a rebuild costs the hashing and a copy. Each module's
bytecode is cached by what it follows from, so a rebuild after a change to metalnet
compiles metalnet only.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import platformdirs

import metalnet
from metalnet.boot import debian, ipxe
from metalnet.boot.initramfs import (
    DEFAULT_MODULES,
    KERNEL_PACKAGE,
    KernelParts,
    Tree,
    init_prelude,
    kernel_parts,
    write_initramfs,
)

PYTHON = Path("/usr/bin/python3.11")  # Debian's python3.11-minimal
STDLIB = Path("/usr/lib/python3.11")
SITE = "usr/lib/python3/dist-packages"  # on Debian's sys.path
STDLIB_SKIP = {
    "test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data",
    "config-3.11-x86_64-linux-gnu", "venv", "distutils", "unittest", "__pycache__",
}  # fmt: skip
# What the agent imports, found by importing it in the building interpreter: the
# entry point and the runner, which the command imports only when it runs.
AGENT_IMPORTS = "import metalnet.boot.ramdisk_agent, metalnet.agent.runner, httpx; httpx.Client()"
REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")  # its name (PEP 508)
SO = re.compile(r"\.so(\.[0-9]+)*$")  # shared objects, whose libraries ldd lists
# Run by the ramdisk's own interpreter: for each [dest, source, cached] of the JSON list
# in argv[1], compile source to the file `cached` unless it exists, as an unchecked
# hash-based .pyc (PEP 552; importlib's "Cached bytecode invalidation": Python loads it
# without looking at the source), and print {dest's .pyc path: cached}. Debian's own
# timestamp-based .pyc files are useless in an initramfs, whose files all have mtime 0:
# Python would recompile every module the agent imports on every boot (12 s of 23 in a
# lone TCG VM here).
COMPILE = """
import importlib.util, json, os, py_compile, sys
mode, written = py_compile.PycInvalidationMode.UNCHECKED_HASH, {}
for dest, source, cached in json.load(open(sys.argv[1])):
    try:
        if not os.path.exists(cached):
            py_compile.compile(source, cached, "/" + dest, True, invalidation_mode=mode)
    except py_compile.PyCompileError:
        continue  # not valid Python 3.11 (a template, an old test): nothing imports it
    written[importlib.util.cache_from_source(dest)] = cached
print(json.dumps(written))
"""

INIT = (
    init_prelude("metalnet ramdisk")
    + """nic=""
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
)

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


# Python runtime ---------------------------------------------------------------------


def agent_packages() -> list[tuple[str, Path]]:
    """(destination, source) of every file of the distributions the agent imports that
    metalnet requires (`required`): a library imported only because it happens to be
    installed (trio, which httpcore tries and the test tools bring) stays out, so the
    ramdisk is the same whether built from a test or a production install, and its
    agent does not import it at every boot (about 1.3 s under TCG)."""
    probe = (
        "import json, sys, importlib.metadata as md;"
        "before = set(sys.modules);"  # what site's .pth files loaded is not the agent's
        f"{AGENT_IMPORTS};"
        "tops = {m.split('.')[0] for m in set(sys.modules) - before};"
        "dists = md.packages_distributions();"
        "print(json.dumps(sorted({d for t in tops for d in dists.get(t, ())} - {'metalnet'})))"
    )
    imported = json.loads(debian.run([sys.executable, "-c", probe]))
    needed = required("metalnet")
    files = []
    for name in (n for n in imported if normalized(n) in needed):
        dist = metadata.distribution(name)
        for entry in dist.files or ():
            source = Path(str(dist.locate_file(entry))).resolve()
            if source.is_file() and "__pycache__" not in entry.parts and ".." not in entry.parts:
                files.append((f"{SITE}/{entry}", source))
    return files


def required(root: str) -> set[str]:
    """The distributions `root` needs installed, its own requirements' and theirs, by
    normalized name (PEP 503); a requirement that holds only with an extra is left out,
    one not installed here (another platform's) too."""
    needed: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if normalized(name) in needed:
            continue
        try:
            requirements = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        needed.add(normalized(name))
        todo += [
            REQUIREMENT.match(r)[1] for r in requirements if "extra" not in r.partition(";")[2]
        ]
    return needed


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def shared_libraries(binaries: Iterable[Path]) -> dict[str, Path]:
    """Library path (as the dynamic loader looks it up) -> file, for all binaries at once."""
    libraries: dict[str, Path] = {}
    for line in debian.run(["ldd", *map(str, binaries)]).splitlines():
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
    if not PYTHON.is_file():
        raise debian.BuildError(f"{PYTHON} is missing (Debian: apt-get install python3.11-minimal)")
    parts = kernel_parts(cache / "debs", kernel_package, modules)
    tree = _tree(parts)
    vmlinuz = parts.vmlinuz
    kernel_digest = debian.file_digest(vmlinuz).hex()
    key = hashlib.sha256(f"{tree.digest()}\0{kernel_digest}".encode()).hexdigest()
    built = cache / "builds" / key[:16]
    cached = (built / ipxe.INITRD).is_file()
    if not cached:
        built.mkdir(parents=True, exist_ok=True)
        partial = built / (ipxe.INITRD + ".partial")
        add_bytecode(tree, cache / "bytecode")
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
        parts.kernel_version,
        (output / ipxe.INITRD).stat().st_size,
        (output / ipxe.KERNEL).stat().st_size,
        [Path(m).name for m in parts.order],
    )
    (output / "ramdisk.json").write_text(json.dumps(result.manifest(), indent=2) + "\n")
    return result


def add_bytecode(tree: Tree, cache: Path) -> None:
    """A .pyc beside every Python source of the tree, compiled by the ramdisk's
    interpreter (see COMPILE) into `cache`, named by what it follows from (interpreter,
    path, source), so a rebuild after a change to metalnet compiles metalnet only. The
    build's key needs no part of them: interpreter and sources are in the tree."""
    cache.mkdir(parents=True, exist_ok=True)
    interpreter = debian.file_digest(PYTHON)
    jobs = []
    for dest, source in tree.files.items():
        if dest.endswith(".py") and isinstance(source, Path):
            key = hashlib.sha256(interpreter + dest.encode() + debian.file_digest(source))
            jobs.append((dest, str(source), str(cache / f"{key.hexdigest()}.pyc")))
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=cache) as listing:
        json.dump(jobs, listing)
        listing.flush()
        compiled = json.loads(debian.run([str(PYTHON), "-c", COMPILE, listing.name]))
    for pyc, cached in compiled.items():
        tree.add(pyc, Path(cached))


def _tree(parts: KernelParts) -> Tree:
    tree = parts.base_tree(INIT)
    tree.add("etc/metalnet/udhcpc.sh", UDHCPC_HOOK.encode(), 0o755)
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
    return tree
