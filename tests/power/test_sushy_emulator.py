"""The Redfish driver against sushy-tools' emulator: a Redfish service metalnet did not write.

The emulator's fake driver applies a power change 1-11 s after it is requested (like
real hardware), so the test polls the power state against a deadline.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from power_helpers import free_port

from metalnet.power import BmcTarget, BootDevice, PowerState, driver_for

SYSTEM_UUID = "5f0b8a7e-3c1d-4e2f-9a6b-7c8d9e0f1a2b"
# Installed next to this interpreter (the venv's bin/), which need not be on PATH.
EMULATOR = str(Path(sys.executable).with_name("sushy-emulator"))


def _wait_until_serving(base: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sushy-emulator exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/redfish/v1/", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("sushy-emulator did not start serving in time")


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[str]:
    """sushy-emulator with one fake system on a free port; yields its base URL."""
    if not Path(EMULATOR).exists():
        pytest.skip("sushy-emulator (sushy-tools) not installed")
    config = tmp_path / "emulator.conf"
    system = {"uuid": SYSTEM_UUID, "name": "n1", "power_state": "Off", "nics": []}
    # The emulator keeps system state on disk (by default in a directory shared by all runs).
    config.write_text(
        "SUSHY_EMULATOR_FAKE_DRIVER = True\n"
        f"SUSHY_EMULATOR_STATE_DIR = {str(tmp_path / 'state')!r}\n"
        f"SUSHY_EMULATOR_FAKE_SYSTEMS = [{system!r}]\n"
    )
    port = free_port()
    command = [EMULATOR, "--config", str(config), "-i", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base, process, time.monotonic() + 10)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_redfish_driver_powers_on_an_emulated_system_with_pxe(emulator: str) -> None:
    url = emulator.replace("http://", "redfish+http://") + f"/redfish/v1/Systems/{SYSTEM_UUID}"
    with driver_for(BmcTarget("n1", url, "admin", "password"), timeout=5) as power:
        assert power.power_state() is PowerState.OFF
        power.set_boot_device(BootDevice.PXE)
        power.power_on()

        deadline = time.monotonic() + 15
        while power.power_state() is not PowerState.ON:
            assert time.monotonic() < deadline, "emulated system did not power on within 15 s"
            time.sleep(0.5)

    system = httpx.get(f"{emulator}/redfish/v1/Systems/{SYSTEM_UUID}", timeout=5).json()
    # The emulator stores the target only (it always reports Enabled "Continuous").
    assert system["Boot"]["BootSourceOverrideTarget"] == "Pxe"
