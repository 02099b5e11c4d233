#!/usr/bin/env python
"""Demo disk image benchmark: size and build time of `metalnet image build-demo`, cold
and cached, and how long the image takes to boot to its DHCP address under QEMU TCG.

- `cold`: an empty cache directory: apt-cache resolution, `apt-get download` of the
  kernel, busybox-static, syslinux, syslinux-common and mtools packages, unpacking,
  the initramfs, the FAT partition, syslinux and the MBR.
- `warm_inputs`: the .deb files are cached but the image is not (what a change to
  the image's init or layout costs).
- `cached`: nothing changed: the inputs are hashed and the cached image copied.
- `boot` (when qemu-system-x86_64 is installed): wall seconds from starting QEMU
  (SeaBIOS, TCG, user networking) to syslinux's banner, to the
  `metalnet-demo: address` line and to the shell prompt.

Wall-clock seconds (the machine may be shared: CPU seconds are reported too).
Writes bench/results/demo_image.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from metalnet.boot import demo_image

RESULTS = Path(__file__).resolve().parent / "results" / "demo_image.json"
BOOT_DEADLINE_SECONDS = 300.0


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(output: Path, cache: Path) -> tuple[demo_image.DemoImage, dict[str, object]]:
    wall, cpu = time.monotonic(), cpu_seconds()
    result = demo_image.build_demo_image(output, cache)
    return result, {
        "wall_seconds": round(time.monotonic() - wall, 2),
        "cpu_seconds": round(cpu_seconds() - cpu, 2),
        "cached": result.cached,
    }


def boot(image: Path, qemu: str) -> dict[str, float]:
    """Seconds from QEMU's start to each milestone of the console contract."""
    started = time.monotonic()
    with subprocess.Popen(
        [qemu, "-accel", "tcg", "-m", "256", "-nographic", "-nodefaults", "-no-reboot",
         "-monitor", "none", "-serial", "stdio", "-boot", "c",
         "-drive", f"file={image},if=virtio,format=raw",
         "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    ) as process:  # fmt: skip
        try:
            assert process.stdout is not None and process.stdin is not None
            console = demo_image.SerialConsole(process.stdout, process.stdin)
            milestones = {}
            for name, pattern in (
                ("to_bootloader_seconds", r"^SYSLINUX 6"),
                ("to_address_seconds", rf"^{demo_image.TAG}: address "),
            ):
                console.expect(pattern, BOOT_DEADLINE_SECONDS)
                milestones[name] = round(time.monotonic() - started, 2)
            console.expect_prompt(BOOT_DEADLINE_SECONDS)
            milestones["to_prompt_seconds"] = round(time.monotonic() - started, 2)
            return milestones
        finally:
            process.kill()


def run() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="metalnet-demo-image-bench-") as tmp:
        cache, output = Path(tmp) / "cache", Path(tmp) / "demo.img"
        _, cold = timed(output, cache)
        shutil.rmtree(cache / "builds")
        _, warm = timed(output, cache)
        result, cached = timed(output, cache)
        qemu = shutil.which("qemu-system-x86_64")
        booted = boot(output, qemu) if qemu else None
    assert not cold["cached"] and not warm["cached"] and cached["cached"]
    return {
        "machine": {"cpus": len(os.sched_getaffinity(0)), "system": platform.platform()},
        "kernel_version": result.kernel_version,
        "image_bytes": result.size_bytes,
        "cold": cold,
        "warm_inputs": warm,
        "cached": cached,
        "boot_tcg": booted,
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    data = run()
    print(json.dumps(data, indent=2))
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
