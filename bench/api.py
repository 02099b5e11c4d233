#!/usr/bin/env python
"""REST API load benchmark: `metalnet serve` on loopback, driven by wrk.

One command, bounded (about 3 x 3 x `--duration` seconds plus start-ups): for each
configuration, SQLite with one process, then a throwaway PostgreSQL cluster
(metalnet.sim.lab.postgres) with one process and with one per core (`serve
--workers`), it seeds a database (project `alpha` with `--networks` networks, a
project token), starts `metalnet serve` as a subprocess on a free loopback port and
measures with wrk (Debian package `wrk`; load generator on the same machine):

* `GET /v1/projects/alpha` with the project token at `--connections` connections;
* `GET /v1/projects/alpha/networks` (all `--networks` networks) at the same load;
* `GET /v1/projects/alpha` one request at a time (one connection, one thread).

Prints requests/s, p50 and p99 latency, and the server's CPU time per request: CPU
seconds of the serve process and its children over the requests wrk completed, much
less sensitive than latency to other load on the machine (PostgreSQL's own processes
are counted apart, as database CPU per request). Writes bench/results/api.json
under "<label>-sqlite", "<label>-postgresql-1-workers", ... (`--label`, default
"latest"), keeping other keys, with the load average and CPU pressure while measuring.
`--only sqlite` or `--only postgresql` runs one backend.

Targets on a 2-core machine: one project >= 1000 req/s with p99 <= 100 ms at 50
connections, the 200-network list >= 300 req/s, one-at-a-time p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from metalnet import apitokens, inventory, quotas
from metalnet.config import load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.sim.lab.postgres import PgCluster, find_pg_bin

RESULTS = Path(__file__).with_name("results") / "api.json"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def seed(url: str, networks: int) -> str:
    """Project alpha with `networks` networks; returns a project token."""
    db = Database(load_settings(None, url))
    upgrade(db.engine)
    with db.session() as s:
        project = inventory.create_project(s, "alpha")
        quotas.set_quota(s, project, networks=networks, instances=None)
        for i in range(networks):
            inventory.create_network(
                s, db.settings, "alpha", f"net{i}", f"10.{i // 250}.{i % 250}.0/24"
            )
        _row, token = apitokens.create(s, "bench", "alpha")
    db.engine.dispose()
    return token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, port: int, workers: int, home: str) -> subprocess.Popen:
    metalnet = str(Path(sys.executable).with_name("metalnet"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("METALNET_")}
    env["HOME"] = home
    command = [metalnet, "--db", url, "serve", "--listen", f"127.0.0.1:{port}"]
    if workers > 1:
        command += ["--workers", str(workers)]
    return subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)


def wait_ready(base: str, token: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            headers = {"Authorization": f"Bearer {token}"}
            if httpx.get(f"{base}/v1/projects/alpha", headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("metalnet serve did not answer in time")


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process `root` and every descendant, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, used = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited while we looked
        fields = text[text.rindex(")") + 2 :].split()
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / tick

    def descends(pid: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parents.get(pid, 0)
        return False

    return sum(seconds for pid, seconds in used.items() if descends(pid))


def run_wrk(
    url: str,
    token: str,
    connections: int,
    threads: int,
    duration: int,
    server: int,
    database: int | None,
) -> dict:
    """wrk's requests/s and latency percentiles (ms) for GET `url`, and the CPU time
    the server (process id `server`) spent per request."""
    cpu_before = cpu_seconds(server)
    db_before = cpu_seconds(database) if database else 0.0
    out = subprocess.run(
        [
            "wrk",
            f"-c{connections}",
            f"-t{threads}",
            f"-d{duration}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    cpu = cpu_seconds(server) - cpu_before
    db_cpu = cpu_seconds(database) - db_before if database else 0.0
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    percentiles = {
        p: float(v) * UNITS[unit]
        for p, v, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": round(rate, 1),
        "p50_ms": round(percentiles["50"], 2),
        "p99_ms": round(percentiles["99"], 2),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "server_cpu_ms_per_request": round(1000 * cpu / max(requests, 1), 3),
        "database_cpu_ms_per_request": round(1000 * db_cpu / max(requests, 1), 3),
        "connections": connections,
        "seconds": duration,
    }


def measure(
    new_url: Callable[[str], str], workers: int, database: int | None, args: argparse.Namespace
) -> dict:
    """Seed a new database, serve it with `workers` processes, run the three loads;
    `database`: the database server's process id (its CPU is counted apart)."""
    with tempfile.TemporaryDirectory() as home:
        url = new_url(home)
        token = seed(url, args.networks)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(url, port, workers, home)
        try:
            wait_ready(base, token, time.monotonic() + 60)
            one = f"{base}/v1/projects/alpha"
            networks = f"{base}/v1/projects/alpha/networks"
            pids, load, seconds = (server.pid, database), args.connections, args.duration
            results = {
                "project_at_load": run_wrk(one, token, load, 2, seconds, *pids),
                "networks_at_load": run_wrk(networks, token, load, 2, seconds, *pids),
                "project_one_at_a_time": run_wrk(one, token, 1, 1, seconds, *pids),
            }
        finally:
            server.terminate()
            server.wait(30)
    return {
        "load_average": round(os.getloadavg()[0], 2),
        "cpu_pressure_pct": cpu_pressure(),
        "cores": os.cpu_count(),
        "workers": workers,
        "networks": args.networks,
        "results": results,
    }


def cpu_pressure() -> float | None:
    """Share of the last 10 s in which some runnable task waited for a CPU (Linux PSI)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return None
    return float(re.search(r"avg10=([\d.]+)", line).group(1))


Configuration = tuple[str, int, Callable[[str], str], int | None]


def configurations(only: str | None) -> Iterator[Configuration]:
    """(name, processes, database URL maker given a scratch directory, the database
    server's process id or None) of each configuration to measure."""
    if only in (None, "sqlite"):
        yield "sqlite", 1, lambda home: f"sqlite:///{home}/api.db", None
    if only in (None, "postgresql"):
        pg_bin = find_pg_bin()
        if pg_bin is None:
            raise SystemExit("PostgreSQL (initdb, pg_ctl) is not installed: use --only sqlite")
        cluster = PgCluster(pg_bin)
        cluster.start()
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        try:
            for workers in sorted({1, os.cpu_count() or 1}):
                name = f"postgresql-{workers}-workers"
                yield name, workers, lambda _home: cluster.new_database(), postmaster
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="latest")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--networks", type=int, default=200)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    recorded = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name, workers, new_url, database in configurations(args.only):
        entry = measure(new_url, workers, database, args)
        print(
            f"{name} ({workers} processes, load average {entry['load_average']:.2f}, "
            f"CPU pressure {entry['cpu_pressure_pct']}%):"
        )
        for load, r in entry["results"].items():
            print(
                f"  {load:<24} {r['requests_per_s']:>8.1f} req/s  p50 {r['p50_ms']:>8.2f} ms"
                f"  p99 {r['p99_ms']:>8.2f} ms  CPU {r['server_cpu_ms_per_request']:>6.3f}"
                f" ms/req (+ database {r['database_cpu_ms_per_request']:.3f})"
                f"  non-2xx {r['non_2xx']}"
            )
        recorded[f"{args.label}-{name}"] = entry
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
