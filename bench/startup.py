#!/usr/bin/env python
"""CLI start-up benchmark: `metalnet` commands, each in a fresh process.

    .venv/bin/python bench/startup.py [--runs 10] [--label current] [--instructions]

Like hyperfine: every command runs `--warmup` times unmeasured (to fill the page cache),
then `--runs` times; the table shows the wall time (min, median) and the CPU time the
process used (user + system: min, median), in seconds, against the target. On a shared
machine the CPU time and the minimum are the figures to compare: other processes stretch
the wall time of a run but not the work it does. `--instructions` adds the instructions
one run executes (valgrind), which no load changes at all.

Commands run on the embedded default database (a throwaway HOME, migrated by the
warm-up) as a new user would run them; `switch apply` parks one port of a fake switch
(in-process, no device latency), so its figure is the start-up to a sent change plus
the guard and the exit. metalnet's modules are byte-compiled first, as installing the
package does (an editable install with PYTHONDONTWRITEBYTECODE would otherwise
recompile them on every run). Results go to bench/results/startup.json under `--label`
(other labels are kept), with the load average beside them.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import metalnet

APPLY = [{"switch": "tor1", "port": "eth1", "vlan": 4000}]
# name -> (arguments, target seconds on an idle 2-core machine)
COMMANDS: dict[str, tuple[list[str], float | None]] = {
    "--help": (["--help"], 0.2),
    "project --help": (["project", "--help"], 0.2),
    "switch --help": (["switch", "--help"], 0.2),
    "project list": (["project", "list"], 0.6),
    "node list --json": (["node", "list", "--json"], None),
    "switch apply (fake, 1 port)": (["switch", "apply", "apply.json"], 0.6),
}
BASELINE = {"python -c pass": [sys.executable, "-c", "pass"]}


def run_once(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run; its exit status is checked."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, timeout=60)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(argv: list[str], env: dict[str, str], cwd: str, runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        run_once(argv, env, cwd)
    walls, cpus = zip(*(run_once(argv, env, cwd) for _ in range(runs)), strict=True)
    return {
        "wall_min": round(min(walls), 3),
        "wall_median": round(statistics.median(walls), 3),
        "cpu_min": round(min(cpus), 3),
        "cpu_median": round(statistics.median(cpus), 3),
        "runs": runs,
    }


def instructions(argv: list[str], env: dict[str, str], cwd: str) -> int | None:
    """Instructions one run executes, counted by valgrind (None without valgrind)."""
    if shutil.which("valgrind") is None:
        return None
    count = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    done = subprocess.run(
        [*count, *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    return int(found.group(1).replace(",", "")) if found else None


def prepare(home: str, metalnet_bin: str, env: dict[str, str]) -> None:
    """A fake switch to apply to, and the change file."""
    subprocess.run(
        [metalnet_bin, "switch", "add", "tor1", "--driver", "fake", "--address",
         "127.0.0.1:9", "--username", "u", "--password", "pw"],
        env=env, cwd=home, check=True, stdout=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    Path(home, "apply.json").write_text(json.dumps(APPLY))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--label", default="current")
    parser.add_argument("--instructions", action="store_true", help="Count with valgrind too.")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "startup.json"))
    args = parser.parse_args()
    metalnet_bin = str(Path(sys.executable).with_name("metalnet"))
    compileall.compile_dir(Path(metalnet.__file__).parent, quiet=1)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METALNET_")}
        env.update(HOME=home, XDG_DATA_HOME=f"{home}/data")
        prepare(home, metalnet_bin, env)
        runs = {name: argv for name, argv in BASELINE.items()}
        runs.update({f"metalnet {n}": [metalnet_bin, *a] for n, (a, _) in COMMANDS.items()})
        for name, argv in runs.items():
            results[name] = measure(argv, env, home, args.runs, args.warmup)
            if args.instructions:
                results[name]["instructions"] = instructions(argv, env, home)
    targets = {f"metalnet {n}": t for n, (_, t) in COMMANDS.items()}
    print(
        f"{'command':<38} {'wall min':>8} {'median':>7} {'cpu min':>8} {'median':>7} "
        f"{'target':>6}" + ("  instructions" if args.instructions else "")
    )
    for name, r in results.items():
        target = targets.get(name)
        line = (
            f"{name:<38} {r['wall_min']:>8.3f} {r['wall_median']:>7.3f} {r['cpu_min']:>8.3f} "
            f"{r['cpu_median']:>7.3f} {'' if target is None else f'{target:.1f}':>6}"
        )
        if args.instructions and r.get("instructions"):
            line += f"  {r['instructions'] / 1e6:>9.0f} M"
        print(line)
    load = os.getloadavg()
    print(f"load average while measuring: {load[0]:.2f} on {os.cpu_count()} cores")
    out = Path(args.out)
    recorded = json.loads(out.read_text()) if out.exists() else {}
    recorded[args.label] = {
        "load_average": round(load[0], 2),
        "cpus": os.cpu_count(),
        "targets": {k: v for k, v in targets.items() if v is not None},
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
