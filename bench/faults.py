#!/usr/bin/env python
"""Fault campaign benchmark: every fault N times, one table of what survived.

Runs the scenarios of metalnet.sim.lab.faults.scenarios -- the very functions the tests
check -- `--runs` times each and prints, per fault: runs, how many hit their target
transaction, how many recovered, time to recover (median / max, from injecting the
fault until the settled system passed the audit), and anything lost: ports neither in
their desired VLAN nor reported, stuck instances, duplicate applications, isolation
violations, journal entries the switch never showed. See bench/README.md, "Fault campaign".
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metalnet.sim.lab.faults.scenarios import SCENARIOS, Env, Outcome
from metalnet.sim.lab.postgres import PgCluster, find_pg_bin

LOSS_KINDS = ("unreported", "stuck", "duplicates", "violations", "unbacked")


@dataclass
class Row:
    """The table row of one fault over all its runs."""

    fault: str
    runs: int = 0
    hit: int = 0
    recovered: int = 0
    seconds: list[float] = field(default_factory=list)
    lost: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LOSS_KINDS, 0))
    crashed: int = 0
    details: list[dict[str, object]] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.fault = outcome.fault
        self.runs += 1
        self.hit += outcome.hit.ok
        self.recovered += outcome.recovered
        if outcome.recovered:
            self.seconds.append(outcome.seconds)
        for kind, items in outcome.lost().items():
            self.lost[kind] += len(items)
        self.details.append(
            {
                "hit": asdict(outcome.hit),
                "recovered": outcome.recovered,
                "seconds": outcome.seconds,
                "notes": outcome.notes,
                **asdict(outcome.findings),
            }
        )

    def add_crash(self, error: str) -> None:
        """A scenario that raised counts as a run that did not recover."""
        self.runs += 1
        self.crashed += 1
        self.details.append({"recovered": False, "crash": error})


def run_all(names: list[str], runs: int, env: Env, workdir: Path) -> list[Row]:
    rows = []
    for name in names:
        row = Row(name)
        for i in range(runs):
            print(f"{name} run {i + 1}/{runs} ...", file=sys.stderr, flush=True)
            try:
                row.add(SCENARIOS[name](workdir / f"{name}-{i}", env))
            except Exception:
                row.add_crash(traceback.format_exc(limit=3))
        rows.append(row)
    return rows


def _seconds(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} / {max(values):.1f}"


def table(rows: list[Row]) -> str:
    """The fault table as fixed-width text."""
    head = (
        "fault",
        "runs",
        "hit",
        "recovered",
        "recover s (med/max)",
        "lost: unreported",
        "stuck",
        "dup",
        "violations",
        "unbacked",
    )
    lines = [head]
    for r in rows:
        lost = r.lost
        lines.append(
            (
                r.fault,
                str(r.runs),
                f"{r.hit}/{r.runs}",
                f"{r.recovered}/{r.runs}",
                _seconds(r.seconds),
                str(lost["unreported"]),
                str(lost["stuck"]),
                str(lost["duplicates"]),
                str(lost["violations"]),
                str(lost["unbacked"]),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per fault (default 3)")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this fault (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    names = args.only or list(SCENARIOS)
    bin_dir = find_pg_bin()
    cluster = PgCluster(bin_dir) if bin_dir else None
    if cluster is None:
        print("no PostgreSQL binaries: skipping kill-worker and db-restart", file=sys.stderr)
        names = [n for n in names if n not in ("kill-worker", "db-restart")]
    else:
        cluster.start()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="metalnet-faults-") as tmp:
            rows = run_all(names, args.runs, Env(cluster), Path(tmp))
    finally:
        if cluster is not None:
            cluster.stop()
    text = table(rows)
    print(text)
    print(f"\n{len(names)} faults x {args.runs} runs in {time.monotonic() - started:.0f}s")
    if args.json:
        document = {"runs": args.runs, "table": text, "faults": [asdict(r) for r in rows]}
        args.json.write_text(json.dumps(document, indent=2, default=str))
    complete = all(r.hit == r.recovered == r.runs and not any(r.lost.values()) for r in rows)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
