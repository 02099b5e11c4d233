#!/usr/bin/env python
"""CLI start-up benchmark: wall time of `metalnet` commands, each in a fresh process.

Like hyperfine: every command runs `--warmup` times unmeasured (to fill the page cache),
then `--runs` times; the table shows min / median / mean / max in seconds and the
result goes to bench/results/startup.json under `--label` (other labels are kept).
`project list` runs on the embedded default database (a throwaway HOME, migrated by
the warm-up), as a new user would run it.

Targets on a 2-core machine: `--help` and `X --help` <= 0.2 s, `project list` <= 0.6 s.
The machine's load average is recorded beside the numbers, since other processes on
the same cores inflate every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "project --help": ["project", "--help"],
    "switch --help": ["switch", "--help"],
    "project list": ["project", "list"],
    "node list --json": ["node", "list", "--json"],
}
BASELINE = {"python -c pass": [sys.executable, "-c", "pass"]}


def measure(argv: list[str], env: dict[str, str], runs: int, warmup: int) -> dict[str, float]:
    """Seconds per run of `argv` (exit status checked): min, median, mean, max."""
    times = []
    for i in range(warmup + runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, timeout=60)
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return {
        "min": round(min(times), 3),
        "median": round(statistics.median(times), 3),
        "mean": round(statistics.fmean(times), 3),
        "max": round(max(times), 3),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--label", default="current")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "startup.json"))
    args = parser.parse_args()
    metalnet = str(Path(sys.executable).with_name("metalnet"))
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METALNET_")}
        env.update(HOME=home, XDG_DATA_HOME=f"{home}/data")
        results = {
            name: measure(argv, env, args.runs, args.warmup) for name, argv in BASELINE.items()
        }
        for name, argv in COMMANDS.items():
            results[f"metalnet {name}"] = measure([metalnet, *argv], env, args.runs, args.warmup)
    print(f"{'command':<28} {'min':>7} {'median':>7} {'mean':>7} {'max':>7}")
    for name, r in results.items():
        print(f"{name:<28} {r['min']:>7.3f} {r['median']:>7.3f} {r['mean']:>7.3f} {r['max']:>7.3f}")
    load = os.getloadavg()
    print(f"load average while measuring: {load[0]:.2f} on {os.cpu_count()} cores")
    out = Path(args.out)
    recorded = json.loads(out.read_text()) if out.exists() else {}
    recorded[args.label] = {
        "load_average": round(load[0], 2),
        "cpus": os.cpu_count(),
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
