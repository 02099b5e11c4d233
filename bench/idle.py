#!/usr/bin/env python
"""Idle cost of open switch sessions, and the time of one transaction.

A controller keeps one NETCONF session per switch open between bursts. ncclient's
session thread polls its socket every `ncclient.transport.session.TICK`; metalnet
used to lower that tick to 10 ms for latency, so every idle session woke 100 times
a second. metalnet's session (`switches.netconf.WakingSSHSession`) waits on the
socket and a wake-up pipe instead. This benchmark opens N sessions to a simulated
Junos switch (served from this process; the sessions live in a child process so
only their CPU is measured), leaves them idle, and reports the child's CPU share:

* ``waking``: metalnet's `JunosDriver` sessions;
* ``poll-10ms``: plain ncclient sessions with the tick the driver used to set.

Then, in the child, the time of one `JunosDriver.apply` (stage + confirm, eleven
RPCs, two commits) on a switch whose commits take no time: protocol cost only.

    .venv/bin/python bench/idle.py --sessions 50 --seconds 10 --json bench/results/idle.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from pathlib import Path

from metalnet.sim.switch import SimSwitch
from metalnet.switches.base import PortChange, SwitchTarget

MODES = ("waking", "poll-10ms")


def _open(mode: str, target: SwitchTarget) -> object:
    if mode == "waking":
        from metalnet.switches.junos import JunosDriver

        driver = JunosDriver(target, timeout=30)
        driver.open()
        return driver
    from ncclient import manager

    return manager.connect(
        host=target.host,
        port=target.port,
        username=target.username,
        password=target.password,
        device_params={"name": "junos"},
        hostkey_verify=False,
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
    )


def _close(session: object) -> None:
    close = getattr(session, "close_session", None) or session.close  # type: ignore[attr-defined]
    close()


def _child(mode: str, target: SwitchTarget, sessions: int, seconds: float, out) -> None:
    if mode == "poll-10ms":
        # reproduce the old driver: it lowered ncclient's tick in its own process
        from ncclient.transport import session as ncclient_session

        ncclient_session.TICK = 0.01
    opened = [_open(mode, target) for _ in range(sessions)]
    time.sleep(1.0)  # let hellos and handshakes settle
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    result = {"mode": mode, "sessions": sessions, "idle_s": wall, "cpu_s": cpu}
    result["core_share_pct"] = 100 * cpu / wall
    if mode == "waking":
        driver = opened[0]
        times = []
        for i in range(20):
            started = time.monotonic()
            driver.apply([PortChange("ge-0/0/1", 100 + i % 2)])
            times.append(time.monotonic() - started)
        result["transaction_s"] = {"median": statistics.median(times), "max": max(times)}
    for session in opened:
        _close(session)
    out.send(result)


def run(mode: str, sim: SimSwitch, sessions: int, seconds: float) -> dict:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(mode, sim.target(), sessions, seconds, child))
    proc.start()
    if not parent.poll(seconds + 120):
        proc.kill()
        raise SystemExit(f"{mode}: no result within {seconds + 120:.0f} s")
    result = parent.recv()
    proc.join(30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with SimSwitch.running("idle-sw", ports=8) as sim:
        for mode in MODES:
            result = run(mode, sim, args.sessions, args.seconds)
            results.append(result)
            line = (
                f"{mode:10} {result['sessions']:4d} idle sessions: "
                f"{result['cpu_s']:.3f} CPU s in {result['idle_s']:.1f} s = "
                f"{result['core_share_pct']:.2f}% of a core"
            )
            if "transaction_s" in result:
                t = result["transaction_s"]
                line += f"; one transaction {t['median'] * 1000:.0f} ms median"
            print(line, flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
