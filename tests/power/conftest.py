"""Fixtures for the power tests: simulated BMCs on 127.0.0.1 and drivers aimed at them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from power_helpers import DRIVER_TIMEOUT, Event, target

from metalnet.power import PowerDriver, driver_for
from metalnet.sim.bmc import IpmiBmc, RedfishBmc, SimBmc, SimNodePower


@pytest.fixture
def events() -> list[Event]:
    """What the simulated node saw: (event, boot device), in order."""
    return []


@pytest.fixture
def node_power(events: list[Event]) -> SimNodePower:
    """A powered-off node n1 that boots from disk unless told otherwise."""
    return SimNodePower("n1", lambda event, device: events.append((event, device)))


@pytest.fixture
def redfish_bmc(node_power: SimNodePower) -> Iterator[RedfishBmc]:
    with RedfishBmc(node_power, "admin", "s3cret-redfish") as bmc:
        yield bmc


@pytest.fixture
def ipmi_bmc(node_power: SimNodePower) -> Iterator[IpmiBmc]:
    with IpmiBmc(node_power, "admin", "s3cret-ipmi") as bmc:
        yield bmc


@pytest.fixture(params=["redfish", "ipmi"])
def bmc(request: pytest.FixtureRequest) -> SimBmc:
    """Each kind of simulated BMC in turn, serving node n1."""
    return request.getfixturevalue(f"{request.param}_bmc")


@pytest.fixture
def driver(bmc: SimBmc) -> Iterator[PowerDriver]:
    """The driver metalnet picks for `bmc`'s URL, with the right credentials."""
    with driver_for(target(bmc), timeout=DRIVER_TIMEOUT) as power:
        yield power
