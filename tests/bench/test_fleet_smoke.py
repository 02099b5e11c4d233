"""Smoke test of bench/fleet.py: the quick preset runs end to end and reports sanely.

Only behaviour is asserted (every port verified over NETCONF, metalnet coalesces,
the JSON has its keys); timings vary by machine and are the benchmark's to print.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "fleet.py"
QUICK_SWITCHES = 4
QUICK_NODES = 8


def test_quick_preset_moves_and_verifies_every_port(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    document = json.loads(out.read_text())
    assert {"options", "results", "speedup", "targets", "bounds", "table"} <= document.keys()
    results = {r["mode"]: r for r in document["results"]}
    assert set(results) == {
        "per-port",
        "per-port-confirmed",
        "metalnet",
        "metalnet-warm",
        "metalnet-arrival",
    }
    for result in results.values():
        assert result["mismatches"] == [] and result["failed"] == 0
        assert {"makespan", "p50", "p95", "p99", "transactions", "sessions"} <= result.keys()
    for mode in ("per-port", "per-port-confirmed", "metalnet", "metalnet-warm"):
        assert results[mode]["verified"] == QUICK_NODES
    # One session per change versus one per switch; a burst costs about a commit per switch.
    for mode in ("per-port", "per-port-confirmed"):
        assert results[mode]["sessions"] == QUICK_NODES
        assert results[mode]["transactions"] == QUICK_NODES
    # The honest baseline commits once per port, as per-port tools do; the old one twice.
    assert results["per-port"]["device_commits"] == QUICK_NODES
    assert results["per-port-confirmed"]["device_commits"] == 2 * QUICK_NODES
    assert set(document["speedup"]) == {"per-port", "per-port-confirmed"}
    assert results["metalnet"]["sessions"] == QUICK_SWITCHES
    assert results["metalnet"]["transactions"] <= 2 * QUICK_SWITCHES
    assert results["metalnet"]["device_commits"] == 2 * results["metalnet"]["transactions"]
    # The warm burst reuses the sessions the unmeasured burst before it opened.
    assert results["metalnet-warm"]["sessions"] == 0
    assert results["metalnet-warm"]["transactions"] <= 2 * QUICK_SWITCHES
    assert {t["target"] for t in document["targets"]} >= {
        "metalnet makespan <= 2.5 L",
        "metalnet-warm makespan <= 2.5 L",
        "speed-up vs per-port (plain commit) >= 15x",
    }
