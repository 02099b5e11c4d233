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


def test_dialect_framing_and_warning_flags() -> None:
    from ncclient import manager
    from ncclient.operations import RaiseMode
    from ncclient.transport.session import NetconfBase

    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_SIM, "switch", "--listen", "127.0.0.1:0", "--ports", "2",
         "--dialect", "legacy", "--netconf-1-1", "--commit-warning", "mgd: deprecated"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        banner = proc.stdout.readline()
        assert "legacy dialect" in banner
        port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))
        with manager.connect(
            host="127.0.0.1", port=port, username="admin", password="admin",
            device_params={"name": "junos"}, hostkey_verify=False,
            look_for_keys=False, allow_agent=False, timeout=10,
        ) as nc:  # fmt: skip
            nc.raise_mode = RaiseMode.ERRORS
            assert nc._session._base == NetconfBase.BASE_11
            info = nc.rpc("<get-software-information/>")
            assert info.xpath("//product-model")[0].text == "ex4200-48t"
            reply = nc.rpc("<commit-configuration/>")
            assert reply.xpath("//rpc-error/error-message")[0].text.strip() == "mgd: deprecated"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


def test_bad_dialect_is_one_line_and_exit_2() -> None:
    from typer.testing import CliRunner

    from metalnet.cli.main import app

    result = CliRunner().invoke(app, ["sim", "switch", "--dialect", "nxos"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: invalid --dialect 'nxos': expected els or legacy"
    ]
