"""`metalnet ramdisk build` for real (Debian's packages via apt), and the real agent
run from the built initramfs (chroot into it) against a real controller.

Uses the user's cache directory, so only the first run downloads (~27 MB) and
builds (~20-40 s here); later runs reuse the cached build in a few seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from bootworld import MACS, BootWorld
from sqlalchemy import select
from typer.testing import CliRunner

from metalnet.boot import initramfs, ipxe, ramdisk
from metalnet.cli.main import app
from metalnet.db.models import AgentTask

NEEDED = ("apt-get", "apt-cache", "dpkg-deb", "ldd", "busybox", "chroot")
MISSING = [tool for tool in NEEDED if shutil.which(tool) is None]
REASON = (
    f"needs Debian's tools {MISSING}"
    if MISSING
    else None
    if ramdisk.PYTHON.is_file()
    else f"needs {ramdisk.PYTHON} (apt-get install python3.11-minimal)"
)
if REASON and os.environ.get("METALNET_REQUIRE_NETNS") == "1":
    raise RuntimeError(f"ramdisk tests required in CI but {REASON}")
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))
AGENT_DEADLINE_SECONDS = 120
DISK_BYTES = 1 << 20
AGENT_MODULE = "metalnet.boot.ramdisk_agent"  # what the initramfs's /init runs


def initramfs_python(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The initramfs's own Python, chrooted into `root`, with nothing of the host's
    environment."""
    return subprocess.run(
        [str(shutil.which("chroot")), str(root), "/usr/bin/python3", *args],
        env={"PATH": "/bin:/usr/bin"},
        capture_output=True,
        text=True,
        timeout=AGENT_DEADLINE_SECONDS,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ramdisk.Ramdisk, Path]:
    """The ramdisk, built (or reused) once, and its initramfs unpacked by busybox cpio."""
    output = tmp_path_factory.mktemp("ramdisk")
    result = ramdisk.build(output)
    root = tmp_path_factory.mktemp("root")
    unpacked = subprocess.run(
        f"zcat {result.initrd} | busybox cpio -id",
        shell=True,
        cwd=root,
        capture_output=True,
        timeout=120,
    )
    assert unpacked.returncode == 0, unpacked.stderr
    return result, root


def test_modules_load_after_their_dependencies(built: tuple[ramdisk.Ramdisk, Path]) -> None:
    _, root = built
    order = (root / "etc/metalnet/modules").read_text().split()
    names = [Path(path).name for path in order]
    for module in ("virtio_net.ko", "virtio_blk.ko", "virtio_pci.ko"):
        assert module in names
    modules_root = root / "lib/modules"
    for i, path in enumerate(order):
        assert (modules_root / path).is_file()
        for dependency in initramfs.modinfo_depends(modules_root / path):
            assert dependency + ".ko" in names[:i], f"{names[i]} loads before {dependency}"
    assert "net_failover.ko" in names[: names.index("virtio_net.ko")]
    assert (root / "init").stat().st_mode & 0o111


def test_rebuild_with_nothing_changed_reuses_the_cache(
    built: tuple[ramdisk.Ramdisk, Path], tmp_path: Path
) -> None:
    first, _ = built
    again = ramdisk.build(tmp_path)
    assert again.cached
    assert again.key == first.key
    assert again.initrd.read_bytes() == first.initrd.read_bytes()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--module", "no_such_nic"], "invalid kernel module 'no_such_nic'"),
        (["--kernel-package", "bash"], "invalid kernel package 'bash': expected linux-image-*"),
        (["--kernel-package", "linux-image-nosuch"], "invalid package 'linux-image-nosuch'"),
    ],
)
def test_bad_input_is_refused_naming_it(
    built: object, tmp_path: Path, option: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["ramdisk", "build", "--output", str(tmp_path), *option])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "initrd.img").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root (CI runs as root)")
def test_the_real_agent_runs_from_the_initramfs(
    built: tuple[ramdisk.Ramdisk, Path], controller: BootWorld
) -> None:
    """The kernel command line the controller's script gives, read by the ramdisk's own
    program, runs `metalnet agent` with the initramfs's Python: it erases the disk."""
    _, root = built
    controller.open_task("n1", kind="erase")
    script = httpx.get(
        controller.url + ipxe.NODE_ROUTE.format(mac=MACS["n1"].replace(":", "-")), timeout=10
    )
    kernel_line = next(line for line in script.text.splitlines() if line.startswith("kernel "))
    (root / "proc" / "cmdline").write_text(kernel_line + " metalnet.disk=/disk.img\n")
    (root / "disk.img").write_bytes(b"\xab" * DISK_BYTES)
    run = initramfs_python(root, "-m", AGENT_MODULE)
    assert run.returncode == 0, run.stderr
    assert (root / "disk.img").read_bytes() == bytes(DISK_BYTES)
    with controller.db.session() as s:
        task = s.scalar(select(AgentTask))
        assert (task.kind, task.state, task.done_bytes) == ("erase", "done", DISK_BYTES)


# Run inside the initramfs: every module of the agent imports (the command imports its
# work only when it runs, so a module the build's probe missed shows only here or on a
# real machine), and both compressed image formats decode with the ramdisk's own zlib
# and liblzma.
EVERY_AGENT_MODULE = """
import gzip, importlib, lzma, pkgutil
import metalnet.agent
from metalnet.boot import ramdisk_agent
for module in pkgutil.walk_packages(metalnet.agent.__path__, "metalnet.agent."):
    importlib.import_module(module.name)
from metalnet.agent import formats
data = bytes(range(256)) * 64
for packed in (gzip.compress(data), lzma.compress(data)):
    kind, chunks = formats.sniff([packed])
    assert b"".join(formats.decode(kind, chunks, len(data))) == data, kind
print("ok")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root (CI runs as root)")
def test_every_agent_module_imports_and_decodes_inside_the_initramfs(
    built: tuple[ramdisk.Ramdisk, Path],
) -> None:
    _, root = built
    run = initramfs_python(root, "-c", EVERY_AGENT_MODULE)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root (CI runs as root)")
def test_the_agent_starts_from_bytecode_compiled_at_build_time(
    built: tuple[ramdisk.Ramdisk, Path],
) -> None:
    """Every module the agent imports has its .pyc in the initramfs, valid whatever the
    unpacked files' times: Python compiles nothing (it would write or rewrite a .pyc,
    which costs seconds per boot under TCG)."""
    _, root = built

    def bytecode() -> dict[Path, tuple[int, int]]:
        return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*.pyc")}

    before = bytecode()
    imports = f"{ramdisk.AGENT_IMPORTS}; import metalnet.cli.agent"
    run = initramfs_python(root, "-c", imports)
    assert run.returncode == 0, run.stderr
    assert len(before) > 500
    assert bytecode() == before


def test_only_distributions_metalnet_requires_go_in(built: tuple[ramdisk.Ramdisk, Path]) -> None:
    """What the building environment has installed besides (test tools bring trio, which
    httpcore imports when it finds it) stays out of the ramdisk."""
    _, root = built
    shipped = {p.name.split("-")[0] for p in (root / ramdisk.SITE).glob("*.dist-info")}
    needed = ramdisk.required("metalnet")
    assert shipped and all(ramdisk.normalized(name) in needed for name in shipped), shipped
    assert not (root / ramdisk.SITE / "trio").exists()
