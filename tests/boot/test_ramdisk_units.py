"""The ramdisk's pieces that need no kernel download: the command-line rule, disk
choice, the content key, and the initramfs archive as a real cpio reads it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalnet.boot import debian, initramfs, ramdisk
from metalnet.boot.cmdline import AgentBoot, agent_boot
from metalnet.boot.ramdisk_agent import agent_argv, first_disk
from metalnet.errors import MetalnetError

WORD = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=1, max_size=40)


@given(host=WORD, node=WORD, token=WORD, noise=st.lists(WORD, max_size=4))
def test_kernel_args_read_back_among_other_words(
    host: str, node: str, token: str, noise: list[str]
) -> None:
    boot = AgentBoot(f"http://{host}:8470", node, token)
    cmdline = " ".join([*noise, "console=ttyS0", boot.kernel_args(), *noise, "quiet"])
    assert agent_boot(cmdline) == boot


def test_missing_setting_is_refused_with_one_line(tmp_path: Path) -> None:
    assert agent_boot("metalnet.controller=http://c:1 metalnet.node=n1") is None
    with pytest.raises(MetalnetError, match=r"lacks metalnet\.controller=, metalnet\.node="):
        agent_argv("console=ttyS0 metalnet.node=n1", tmp_path)


def _block(root: Path, name: str, removable: str = "0") -> None:
    (root / name).mkdir(parents=True)
    (root / name / "removable").write_text(removable + "\n")


def test_the_agent_gets_the_first_fixed_disk_unless_the_entry_names_one(tmp_path: Path) -> None:
    for name, removable in (("loop0", "0"), ("sr0", "1"), ("vdb", "0"), ("vda", "0")):
        _block(tmp_path, name, removable)
    cmdline = "metalnet.controller=http://c:1 metalnet.node=n1 metalnet.token=t"
    argv, token = agent_argv(cmdline, tmp_path)
    assert token == "t"
    assert argv == ["--controller", "http://c:1", "--node", "n1", "--token-env",
                    "METALNET_AGENT_TOKEN", "--disk", "/dev/vda"]  # fmt: skip
    argv, _ = agent_argv(cmdline + " metalnet.disk=/dev/sdz", tmp_path)
    assert argv[-1] == "/dev/sdz"
    assert first_disk(tmp_path / "nothing") is None


def test_content_key_follows_path_mode_content_and_links(tmp_path: Path) -> None:
    source = tmp_path / "file"
    source.write_bytes(b"one")

    def key(**change: object) -> str:
        tree = initramfs.Tree()
        tree.add(str(change.get("dest", "bin/x")), source, int(change.get("mode", 0o644)))
        tree.links["bin/y"] = str(change.get("link", "x"))
        return tree.digest()

    base = key()
    assert key() == base
    assert len({base, key(dest="bin/z"), key(mode=0o755), key(link="z")}) == 4
    source.write_bytes(b"two")
    assert key() != base


@pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox (apt install busybox)")
def test_initramfs_is_a_cpio_archive_busybox_unpacks(tmp_path: Path) -> None:
    tree = initramfs.Tree()
    tree.add("init", b"#!/bin/sh\n", 0o755)
    tree.add("etc/metalnet/modules", b"a.ko\nb.ko\n")
    tree.add("usr/bin/python3.11", b"\x7fELF" + bytes(range(256)), 0o755)
    tree.links["usr/bin/python3"] = "python3.11"
    archive = tmp_path / "initrd.img"
    initramfs.write_initramfs(tree, archive)
    out = tmp_path / "out"
    out.mkdir()
    unpacked = subprocess.run(
        f"zcat {archive} | busybox cpio -id", shell=True, cwd=out, capture_output=True, timeout=30
    )
    assert unpacked.returncode == 0, unpacked.stderr
    assert (out / "init").read_bytes() == b"#!/bin/sh\n"
    assert (out / "init").stat().st_mode & 0o777 == 0o755
    assert (out / "etc/metalnet/modules").stat().st_mode & 0o777 == 0o644
    assert (out / "usr/bin/python3").readlink() == Path("python3.11")
    assert (out / "usr/bin/python3").read_bytes() == b"\x7fELF" + bytes(range(256))
    again = tmp_path / "again.img"
    initramfs.write_initramfs(tree, again)
    assert again.read_bytes() == archive.read_bytes()  # same tree, same bytes


@pytest.mark.skipif(not ramdisk.PYTHON.is_file(), reason=f"needs {ramdisk.PYTHON}")
def test_bytecode_is_compiled_once_per_source_unchecked_by_python(tmp_path: Path) -> None:
    """The ramdisk's interpreter compiles each source once into the bytecode cache; a
    second tree with the same file reuses it, an edited file gets its own; the .pyc
    is hash-based and unchecked (PEP 552 flags 0b01), named as the interpreter looks
    it up, and not valid Python is left out."""
    source, broken = tmp_path / "mod.py", tmp_path / "broken.py"
    source.write_text("ANSWER = 42\n")
    broken.write_text("def (:\n")
    cache = tmp_path / "cache"

    def compiled() -> dict[str, Path]:
        tree = initramfs.Tree()
        tree.add("usr/lib/python3/dist-packages/mod.py", source)
        tree.add("usr/lib/python3/dist-packages/broken.py", broken)
        ramdisk.add_bytecode(tree, cache)
        return {d: s for d, s in tree.files.items() if d.endswith(".pyc")}

    first = compiled()
    (pyc,) = first
    assert pyc == "usr/lib/python3/dist-packages/__pycache__/mod.cpython-311.pyc"
    data = first[pyc].read_bytes()
    assert int.from_bytes(data[4:8], "little") == 0b01  # hash-based, source not checked
    stamp = first[pyc].stat().st_mtime_ns
    assert compiled() == first and first[pyc].stat().st_mtime_ns == stamp
    source.write_text("ANSWER = 43\n")
    assert compiled()[pyc] != first[pyc]


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)")
def test_a_package_unpacked_by_two_builds_at_once_is_kept_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builds sharing a cache extract the same .deb at once: the one that renames
    second keeps the first's copy (it failed with 'Directory not empty')."""
    package = tmp_path / "pkg"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "DEBIAN" / "control").write_text(
        "Package: tiny\nVersion: 1\nArchitecture: all\nMaintainer: m <m@m>\nDescription: d\n"
    )
    (package / "usr" / "share").mkdir(parents=True)
    (package / "usr" / "share" / "tiny").write_text("tiny\n")
    deb = tmp_path / "tiny_1_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(package), str(deb)], check=True, capture_output=True)
    cache = tmp_path / "cache"
    cache.mkdir()
    real_run, raced = debian.run, []

    def extract_while_another_build_does(argv: list[str], **kwargs: object) -> str:
        out = real_run(argv, **kwargs)
        if not raced:  # the other build finishes between this one's extract and rename
            raced.append(None)
            raced[0] = debian.unpack(deb, cache)
        return out

    monkeypatch.setattr(debian, "run", extract_while_another_build_does)
    target = debian.unpack(deb, cache)
    assert raced == [target]
    assert (target / "usr" / "share" / "tiny").read_text() == "tiny\n"
    assert sorted(p.name for p in cache.iterdir()) == [target.name]  # no copy left behind
