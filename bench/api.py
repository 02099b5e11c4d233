#!/usr/bin/env python
"""REST API load benchmark: `metalnet serve` on loopback, driven by wrk.

Seeds a database (project `alpha` with `--networks` networks, a project token), starts
`metalnet serve` as a subprocess on a free loopback port, waits until it answers, then
measures with wrk (Debian package `wrk`; load generator on the same machine):

* `GET /v1/projects/alpha` with the project token at `--connections` connections;
* `GET /v1/projects/alpha/networks` (all `--networks` networks) at the same load;
* `GET /v1/projects/alpha` one request at a time (one connection, one thread).

Each run lasts `--duration` seconds. Prints requests/s, p50 and p99 latency and the
server's CPU time per request (CPU seconds of the serve process and its children over
the requests wrk completed: less sensitive than latency to other load on the machine),
and writes
bench/results/api.json (under the key given by `--label`, e.g. "sqlite" or
"postgresql-4-workers"), keeping other labels already there. `--database-url` selects
PostgreSQL; the default is a throwaway SQLite file. `--workers N` is passed to serve.

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
from pathlib import Path

import httpx

from metalnet import apitokens, inventory, quotas
from metalnet.config import load_settings
from metalnet.db.engine import Database, upgrade

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
    url: str, token: str, connections: int, threads: int, duration: int, server: int
) -> dict:
    """wrk's requests/s and latency percentiles (ms) for GET `url`, and the CPU time
    the server (process id `server`) spent per request."""
    cpu_before = cpu_seconds(server)
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
        "connections": connections,
        "seconds": duration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="sqlite")
    parser.add_argument("--database-url", help="PostgreSQL URL of an empty database.")
    parser.add_argument("--networks", type=int, default=200)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/api.db"
        token = seed(url, args.networks)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(url, port, args.workers, tmp)
        try:
            wait_ready(base, token, time.monotonic() + 60)
            one = f"{base}/v1/projects/alpha"
            networks = f"{base}/v1/projects/alpha/networks"
            pid, load, seconds = server.pid, args.connections, args.duration
            results = {
                "project_at_load": run_wrk(one, token, load, 2, seconds, pid),
                "networks_at_load": run_wrk(networks, token, load, 2, seconds, pid),
                "project_one_at_a_time": run_wrk(one, token, 1, 1, seconds, pid),
            }
        finally:
            server.terminate()
            server.wait(30)
    for name, r in results.items():
        print(
            f"{name:<24} {r['requests_per_s']:>9.1f} req/s  p50 {r['p50_ms']:>8.2f} ms  "
            f"p99 {r['p99_ms']:>8.2f} ms  CPU {r['server_cpu_ms_per_request']:>6.3f} ms/req  "
            f"non-2xx {r['non_2xx']}"
        )
    load = os.getloadavg()[0]
    print(f"load average while measuring: {load:.2f} on {os.cpu_count()} cores")
    recorded = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    recorded[args.label] = {
        "load_average": round(load, 2),
        "workers": args.workers,
        "networks": args.networks,
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
