"""IPMI specifics: the cipher-suite fix, refusals that answer, many BMCs in one process."""

from __future__ import annotations

import logging
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from power_helpers import DRIVER_TIMEOUT, target
from pyghmi.ipmi.command import Command

from metalnet.power import BmcAuthError, BmcTarget, BootDevice, PowerState, driver_for
from metalnet.sim.bmc import IpmiBmc, PowerEvent, SimNodePower


def test_sha256_offer_is_refused_and_the_client_falls_back_to_suite_3(
    ipmi_bmc: IpmiBmc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metalnet.sim.bmc")

    with driver_for(target(ipmi_bmc), timeout=DRIVER_TIMEOUT) as power:
        assert power.power_state() is PowerState.OFF

    # pyghmi offers RAKP-HMAC-SHA256 / HMAC-SHA256-128 first; the BMC says no, then
    # the session that answered the power query used cipher suite 3.
    assert "refusing cipher offer (3, 4, 1)" in caplog.text


def test_unknown_user_is_refused_not_ignored(ipmi_bmc: IpmiBmc) -> None:
    stranger = BmcTarget("n1", ipmi_bmc.url, "stranger", ipmi_bmc.password)
    power = driver_for(stranger, timeout=DRIVER_TIMEOUT)
    with power, pytest.raises(BmcAuthError, match="Unauthorized name"):
        power.power_state()


def test_boot_flags_report_device_and_persistence(ipmi_bmc: IpmiBmc) -> None:
    with driver_for(target(ipmi_bmc), timeout=DRIVER_TIMEOUT) as power:
        power.set_boot_device(BootDevice.PXE, persistent=True)

    client = Command(
        bmc="127.0.0.1",
        userid=ipmi_bmc.username.encode(),
        password=ipmi_bmc.password.encode(),
        port=ipmi_bmc.port,
    )
    assert client.get_bootdev() == {"bootdev": "network", "persistent": True, "uefimode": False}


def test_several_bmcs_serve_concurrently_and_stop_independently() -> None:
    nodes = [SimNodePower(f"n{i}") for i in range(4)]
    bmcs = [IpmiBmc(node).start() for node in nodes]
    try:

        def boot(bmc: IpmiBmc) -> None:
            with driver_for(target(bmc), timeout=DRIVER_TIMEOUT) as power:
                power.set_boot_device(BootDevice.PXE)
                power.power_on()

        with ThreadPoolExecutor(len(bmcs)) as pool:
            list(pool.map(boot, bmcs))
        assert all(node.state is PowerState.ON for node in nodes)

        bmcs[0].stop()
        with driver_for(target(bmcs[1]), timeout=DRIVER_TIMEOUT) as power:
            power.power_off()
        assert nodes[1].state is PowerState.OFF
    finally:
        for bmc in bmcs:
            bmc.stop()


@pytest.mark.skipif(shutil.which("ipmitool") is None, reason="ipmitool not installed")
def test_ipmitool_lanplus_suite_3_drives_the_bmc(
    ipmi_bmc: IpmiBmc, events: list[tuple[PowerEvent, BootDevice | None]]
) -> None:
    """An independent client implementation, as the issue promises (`-I lanplus -C 3`)."""
    base = ["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(ipmi_bmc.port)]
    base += ["-U", ipmi_bmc.username, "-P", ipmi_bmc.password]
    for command in (["chassis", "bootdev", "pxe"], ["power", "on"]):
        subprocess.run([*base, *command], check=True, capture_output=True, timeout=20)

    assert events == [(PowerEvent.POWER_ON, BootDevice.PXE)]


def test_no_pyghmi_socket_is_switched_to_blocking_by_a_send() -> None:
    """Whenever pyghmi makes a socket (after a refused login, past 64 BMCs per socket),
    sending on it must leave it non-blocking: pyghmi's I/O thread reads every socket
    after setting it non-blocking, and a send that switched it back in between left
    that thread blocked in recvfrom and every IPMI session in the process waiting."""
    import pyghmi.ipmi.private.session as pyghmi_session

    import metalnet.power.ipmi  # noqa: F401 - the driver installs the rule

    sock = pyghmi_session.Session._assignsocket(forbiddensockets=list(pyghmi_session.iosockets))
    sock.setblocking(False)  # as the I/O thread leaves it before reading
    to_itself = (pyghmi_session.myself, sock.getsockname()[1])  # pyghmi's own wake-up
    pyghmi_session._io_sendto(sock, b"\x01", to_itself)

    assert not sock.getblocking()
