#!/usr/bin/env python
"""Ramdisk benchmark: size and build time of `metalnet ramdisk build`, cold and cached.

- `cold`: an empty cache directory: apt-cache resolution, `apt-get download` of the
  kernel and busybox-static packages, unpacking, copying the Python runtime, the
  gzip-compressed initramfs.
- `warm_inputs`: the .deb files are cached but the initramfs is not (what a change to
  metalnet's source costs).
- `cached`: nothing changed: the inputs are hashed and the cached files copied.

Wall-clock seconds (the machine may be shared: CPU seconds are reported too).
Writes bench/results/ramdisk.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from metalnet.boot import ramdisk

RESULTS = Path(__file__).resolve().parent / "results" / "ramdisk.json"


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(output: Path, cache: Path) -> tuple[ramdisk.Ramdisk, dict[str, float]]:
    wall, cpu = time.monotonic(), cpu_seconds()
    result = ramdisk.build(output, cache=cache)
    return result, {
        "wall_seconds": round(time.monotonic() - wall, 2),
        "cpu_seconds": round(cpu_seconds() - cpu, 2),
        "cached": result.cached,
    }


def run() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="metalnet-ramdisk-bench-") as tmp:
        cache, output = Path(tmp) / "cache", Path(tmp) / "out"
        _, cold = timed(output, cache)
        shutil.rmtree(cache / "builds")
        _, warm = timed(output, cache)
        result, cached = timed(output, cache)
        cached_bytes = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    assert not cold["cached"] and not warm["cached"] and cached["cached"]
    return {
        "machine": {"cpus": len(os.sched_getaffinity(0)), "system": platform.platform()},
        "kernel_version": result.kernel_version,
        "kernel_bytes": result.kernel_bytes,
        "initrd_bytes": result.initrd_bytes,
        "cache_bytes": cached_bytes,
        "modules": result.modules,
        "cold": cold,
        "warm_inputs": warm,
        "cached": cached,
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    data = run()
    print(json.dumps(data, indent=2))
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
