"""Fixtures for the Junos driver tests: a simulated switch in each dialect, a closed port."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from metalnet.sim.switch import SimSwitch
from metalnet.switches.base import SwitchTarget


@pytest.fixture(params=["els", "legacy"])
def sim(request: pytest.FixtureRequest) -> Iterator[SimSwitch]:
    """An 8-port simulated switch in each Layer 2 dialect (reporting that dialect's model,
    from which the driver learns it); a commit-confirmed minute lasts 0.5 s."""
    with SimSwitch.running(ports=8, confirm_unit_seconds=0.5, dialect=request.param) as sw:
        yield sw


@pytest.fixture
def nowhere() -> SwitchTarget:
    """A target on a local port nobody listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return SwitchTarget("rack9-tor", "127.0.0.1", port, "admin", "admin")
