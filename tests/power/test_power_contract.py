"""The PowerDriver contract, proved over the wire for each protocol (Redfish and IPMI).

Every test runs once against a RedfishBmc through the sushy-based driver and once
against an IpmiBmc through the pyghmi-based driver.
"""

from __future__ import annotations

import socket

import pytest
from power_helpers import DRIVER_TIMEOUT, Event, free_port, target

from metalnet.power import (
    BmcAuthError,
    BmcTarget,
    BmcUnreachable,
    BootDevice,
    PowerDriver,
    PowerState,
    driver_for,
)
from metalnet.sim.bmc import PowerEvent, SimBmc, SimNodePower

SILENT_TIMEOUT = 1.0


def test_spawn_sequence_boots_pxe_then_disk(
    driver: PowerDriver, node_power: SimNodePower, events: list[Event]
) -> None:
    """The lifecycle's own sequence: PXE into the ramdisk, then reboot from disk, then off."""
    assert driver.power_state() is PowerState.OFF

    driver.set_boot_device(BootDevice.PXE)
    driver.power_on()
    assert driver.power_state() is PowerState.ON
    assert node_power.boot_override is None  # a one-time override is used up by the boot

    driver.set_boot_device(BootDevice.DISK)
    driver.reboot()
    driver.power_off()

    assert driver.power_state() is PowerState.OFF
    assert events == [
        (PowerEvent.POWER_ON, BootDevice.PXE),
        (PowerEvent.REBOOT, BootDevice.DISK),
        (PowerEvent.POWER_OFF, None),
    ]


def test_power_on_and_off_are_idempotent(driver: PowerDriver, events: list[Event]) -> None:
    driver.power_on()
    driver.power_on()
    driver.power_off()
    driver.power_off()

    assert [event for event, _ in events] == [PowerEvent.POWER_ON, PowerEvent.POWER_OFF]


def test_reboot_of_a_node_that_is_off_powers_it_on(
    driver: PowerDriver, events: list[Event]
) -> None:
    driver.reboot()

    assert driver.power_state() is PowerState.ON
    assert events == [(PowerEvent.POWER_ON, BootDevice.DISK)]


def test_persistent_boot_device_holds_across_boots(
    driver: PowerDriver, node_power: SimNodePower, events: list[Event]
) -> None:
    driver.set_boot_device(BootDevice.PXE, persistent=True)
    driver.power_on()
    driver.reboot()

    assert events == [(PowerEvent.POWER_ON, BootDevice.PXE), (PowerEvent.REBOOT, BootDevice.PXE)]
    assert node_power.boot_override is BootDevice.PXE
    assert node_power.boot_persistent


def test_wrong_password_is_an_auth_error_naming_node_and_bmc(bmc: SimBmc) -> None:
    power = driver_for(target(bmc, password="wrong-password"), timeout=5)
    with power, pytest.raises(BmcAuthError) as caught:
        power.power_state()

    message = str(caught.value)
    assert "n1" in message
    assert bmc.url in message
    assert "wrong-password" not in message


def test_bmc_refusing_all_logins_is_an_auth_error(bmc: SimBmc, node_power: SimNodePower) -> None:
    bmc.refuse_credentials()

    with driver_for(target(bmc), timeout=5) as power, pytest.raises(BmcAuthError):
        power.power_on()
    assert node_power.state is PowerState.OFF


def test_stalled_bmc_is_unreachable_within_the_timeout_then_recovers(
    bmc: SimBmc, node_power: SimNodePower
) -> None:
    with driver_for(target(bmc), timeout=SILENT_TIMEOUT) as power:
        assert power.power_state() is PowerState.OFF  # logged in before the BMC goes silent
        bmc.stall()
        with pytest.raises(BmcUnreachable) as caught:
            power.power_on()
    assert "n1" in str(caught.value)
    assert bmc.url in str(caught.value)

    bmc.stall(False)
    with driver_for(target(bmc), timeout=DRIVER_TIMEOUT) as power:
        power.power_on()
    assert node_power.state is PowerState.ON


@pytest.mark.parametrize(
    "url",
    ["redfish+http://127.0.0.1:{tcp}/redfish/v1/Systems/n1", "ipmi://127.0.0.1:{udp}"],
    ids=["redfish", "ipmi"],
)
def test_nothing_listening_is_unreachable(url: str) -> None:
    url = url.format(tcp=free_port(), udp=free_port(socket.SOCK_DGRAM))
    power = driver_for(BmcTarget("n9", url, "admin", "pw"), timeout=SILENT_TIMEOUT)
    with power, pytest.raises(BmcUnreachable) as caught:
        power.power_state()
    assert str(caught.value).startswith(f"node n9 BMC {url}: ")
