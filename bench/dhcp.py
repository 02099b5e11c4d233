#!/usr/bin/env python
"""DHCP benchmark: from a reservation change to the new client being served.

Real dnsmasq and busybox udhcpc in network namespaces (needs root), driven by the
DHCP manager from a SQLite database, as in tests/dhcp. Per run a new instance is
created (its reservation committed), then:

- `sync`: one manager pass (hosts file rewritten, SIGHUP, dnsmasq confirmed it
  re-read the file), then a DHCP exchange from scratch; reported are the pass, the
  exchange and their sum, the time from the commit to the lease in hand.
- `loop`: the manager's own loop at `dhcp_interval` (default 2 s) while the client
  keeps asking (udhcpc: one DISCOVER a second, as real clients back off slower):
  what a node booting right after its instance was created sees.
- `restart`: dnsmasq is killed; the next pass restarts it; the time until an
  already-reserved client is served again.

Prints a table and writes bench/results/dhcp.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from metalnet.sim.lab.dhcp_world import DhcpWorld

VLAN = 130
RESULTS = Path(__file__).resolve().parent / "results" / "dhcp.json"


def mac(i: int) -> str:
    return f"02:00:00:00:13:{i:02x}"


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 4),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4),
        "max": round(ordered[-1], 4),
    }


def run(runs: int, interval: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        world = DhcpWorld(Path(tmp))
        try:
            world.vlan_interface(VLAN)
            world.network("bench", "net", f"10.{VLAN}.0.0/24", VLAN)
            for i in range(1, 2 * runs + 2):
                world.node(f"n{i}", mac(i), f"eth{i}")
            manager = world.manager()
            world.spawn("first", "bench", "net", "n1")  # the server is running before we measure
            manager.sync()
            sync_pass, exchange, total = [], [], []
            for i in range(2, runs + 2):
                client = world.client(VLAN, mac(i))
                committed = time.perf_counter()
                address = world.spawn(f"s{i}", "bench", "net", f"n{i}")
                start = time.perf_counter()
                manager.sync()
                synced = time.perf_counter()
                lease = world.dhcp(client)
                done = time.perf_counter()
                assert lease is not None and str(lease.address) == address, (i, lease)
                sync_pass.append(synced - start)
                exchange.append(done - synced)
                total.append(done - committed)
            loop = []
            manager.interval = interval
            manager.start()
            for i in range(runs + 2, 2 * runs + 2):
                client = world.client(VLAN, mac(i))
                committed = time.perf_counter()
                address = world.spawn(f"l{i}", "bench", "net", f"n{i}")
                lease = world.dhcp(client, tries=int(interval) + 10)
                loop.append(time.perf_counter() - committed)
                assert lease is not None and str(lease.address) == address, (i, lease)
            manager.stop()
            restart = []
            client = world.client(VLAN, mac(1))
            for _ in range(runs):
                manager.stop()
                manager = world.manager()  # a first crash: no back-off from the last run
                manager.sync()
                os.kill(manager.servers[VLAN].pid, signal.SIGKILL)
                killed = time.perf_counter()
                manager.servers[VLAN].process.wait(5)
                manager.sync()
                assert world.dhcp(client) is not None
                restart.append(time.perf_counter() - killed)
        finally:
            world.close()
    version = subprocess.run(["dnsmasq", "--version"], capture_output=True, text=True)
    return {
        "runs": runs,
        "dhcp_interval": interval,
        "dnsmasq": version.stdout.splitlines()[0],
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.platform()}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": {
            "sync_pass": summary(sync_pass),
            "dhcp_exchange": summary(exchange),
            "commit_to_lease_sync": summary(total),
            "commit_to_lease_loop": summary(loop),
            "kill_to_lease_restart": summary(restart),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--interval", type=float, default=2.0, help="dhcp_interval (seconds)")
    parser.add_argument("--no-save", action="store_true", help="do not write results JSON")
    args = parser.parse_args()
    result = run(args.runs, args.interval)
    print(f"{'measure':<24} {'median':>8} {'p90':>8} {'max':>8}   (seconds, {args.runs} runs)")
    for name, stats in result["seconds"].items():
        print(f"{name:<24} {stats['median']:>8.3f} {stats['p90']:>8.3f} {stats['max']:>8.3f}")
    if not args.no_save:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
