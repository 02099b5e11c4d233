"""`metalnet sim switch` as a user runs it: foreground, logs each RPC, stops on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from metalnet.cli.sim import parse_stall
from metalnet.errors import InputError
from metalnet.switches.base import PortChange, SwitchTarget
from metalnet.switches.junos import JunosDriver
from metalnet.validate import check_listen

RUN_SIM = "from metalnet.cli.sim import app; app()"


def test_runs_logs_rpcs_persists_and_stops_on_sigterm(tmp_path) -> None:
    state = tmp_path / "sw.conf"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUN_SIM,
            "switch",
            "--listen",
            "127.0.0.1:0",
            "--ports",
            "4",
            "--username",
            "ops",
            "--password",
            "s3cret",
            "--state-file",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = proc.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))
        target = SwitchTarget("sw1", "127.0.0.1", port, "ops", "s3cret")
        with JunosDriver(target) as driver:
            driver.apply([PortChange("ge-0/0/2", 42)])
    finally:
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert re.search(r"sw1 session \d+ commit-configuration: ok", log)
    assert re.search(r"sw1 session \d+ unlock-configuration: ok", log)
    assert "members vlan42;" in state.read_text()


def test_option_values_are_checked() -> None:
    assert check_listen("127.0.0.1:8300") == ("127.0.0.1", 8300)
    assert parse_stall("commit=2.5") == ("commit", 2.5)
    for bad in ("8300", "host:", "h:70000"):
        with pytest.raises(InputError, match="invalid listen address"):
            check_listen(bad)
    with pytest.raises(InputError, match="RPC=SECONDS"):
        parse_stall("commit")
