"""Redfish specifics: the simulated service as a plain HTTP client sees it, and the driver."""

from __future__ import annotations

import httpx
import pytest
from power_helpers import DRIVER_TIMEOUT, target

from metalnet.power import BmcTarget, BmcUnreachable, PowerError, PowerState, driver_for
from metalnet.sim.bmc import RedfishBmc, SimNodePower

SESSIONS = "/redfish/v1/SessionService/Sessions"


@pytest.fixture
def http(redfish_bmc: RedfishBmc) -> httpx.Client:
    """An HTTP client for the simulated BMC, without credentials."""
    with httpx.Client(base_url=f"http://127.0.0.1:{redfish_bmc.port}", timeout=5) as client:
        yield client


@pytest.fixture
def basic(redfish_bmc: RedfishBmc) -> httpx.BasicAuth:
    return httpx.BasicAuth(redfish_bmc.username, redfish_bmc.password)


def test_service_root_is_public_and_everything_else_needs_credentials(
    http: httpx.Client, redfish_bmc: RedfishBmc, basic: httpx.BasicAuth
) -> None:
    root = http.get("/redfish/v1/")
    assert root.status_code == 200
    assert root.json()["Links"]["Sessions"]["@odata.id"] == SESSIONS

    assert http.get(redfish_bmc.system_path).status_code == 401
    wrong = httpx.BasicAuth(redfish_bmc.username, "wrong")
    assert http.get(redfish_bmc.system_path, auth=wrong).status_code == 401
    system = http.get(redfish_bmc.system_path, auth=basic).json()
    assert system["Id"] == "n1"
    assert system["PowerState"] == "Off"


def test_session_login_token_and_logout(http: httpx.Client, redfish_bmc: RedfishBmc) -> None:
    login = {"UserName": redfish_bmc.username, "Password": redfish_bmc.password}
    created = http.post(SESSIONS, json=login)
    assert created.status_code == 201
    token = {"X-Auth-Token": created.headers["X-Auth-Token"]}

    assert http.get(redfish_bmc.system_path, headers=token).status_code == 200
    assert http.delete(created.headers["Location"], headers=token).status_code == 204
    assert http.get(redfish_bmc.system_path, headers=token).status_code == 401

    refused = http.post(SESSIONS, json={**login, "Password": "wrong"})
    assert refused.status_code == 401


def test_reset_and_boot_override_over_http(
    http: httpx.Client, redfish_bmc: RedfishBmc, basic: httpx.BasicAuth, node_power: SimNodePower
) -> None:
    reset = f"{redfish_bmc.system_path}/Actions/ComputerSystem.Reset"
    assert http.post(reset, json={"ResetType": "ForceRestart"}, auth=basic).status_code == 409
    assert http.post(reset, json={"ResetType": "Nmi"}, auth=basic).status_code == 400

    patch = {"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}
    assert http.patch(redfish_bmc.system_path, json=patch, auth=basic).status_code == 204
    assert http.post(reset, json={"ResetType": "PushPowerButton"}, auth=basic).status_code == 204

    assert node_power.state is PowerState.ON
    boot = http.get(redfish_bmc.system_path, auth=basic).json()["Boot"]
    assert boot["BootSourceOverrideEnabled"] == "Disabled"  # the one-time override was used

    bad = {"Boot": {"BootSourceOverrideTarget": "Floppy"}}
    assert http.patch(redfish_bmc.system_path, json=bad, auth=basic).status_code == 400


def test_driver_logs_out_its_session_on_close(
    redfish_bmc: RedfishBmc, http: httpx.Client, basic: httpx.BasicAuth
) -> None:
    with driver_for(target(redfish_bmc), timeout=DRIVER_TIMEOUT) as power:
        power.power_state()
        assert http.get(SESSIONS, auth=basic).json()["Members@odata.count"] == 1
    assert http.get(SESSIONS, auth=basic).json()["Members@odata.count"] == 0


def test_url_without_system_path_uses_the_only_system(redfish_bmc: RedfishBmc) -> None:
    url = f"redfish+http://127.0.0.1:{redfish_bmc.port}"
    with driver_for(BmcTarget("n1", url, "admin", redfish_bmc.password)) as power:
        power.power_on()
        assert power.power_state() is PowerState.ON


def test_wrong_system_path_is_a_power_error(redfish_bmc: RedfishBmc) -> None:
    url = f"redfish+http://127.0.0.1:{redfish_bmc.port}/redfish/v1/Systems/other"
    power = driver_for(BmcTarget("n1", url, "admin", redfish_bmc.password))
    with power, pytest.raises(PowerError, match="Systems/other"):
        power.power_state()


def test_https_url_against_a_plain_http_bmc_is_unreachable(redfish_bmc: RedfishBmc) -> None:
    url = f"redfish+https://127.0.0.1:{redfish_bmc.port}{redfish_bmc.system_path}"
    power = driver_for(BmcTarget("n1", url, "admin", redfish_bmc.password))
    with power, pytest.raises(BmcUnreachable, match="node n1 BMC redfish\\+https://"):
        power.power_state()
