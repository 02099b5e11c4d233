"""Fixtures for the switch simulator tests: a running switch and real NETCONF clients."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from ncclient import manager
from ncclient.manager import Manager
from ncclient.transport import NCClientError

from metalnet.sim.switch import SimSwitch

Connect = Callable[..., Manager]


@pytest.fixture
def switch() -> Iterator[SimSwitch]:
    """An 8-port switch with zero commit latency; confirm minutes last 1 s."""
    with SimSwitch.running(ports=8, confirm_unit_seconds=1.0) as sw:
        yield sw


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Open ncclient Junos sessions (closed at teardown): connect(sw, password=...)."""
    opened: list[Manager] = []

    def open_session(sw: SimSwitch, *, password: str | None = None) -> Manager:
        session = manager.connect(
            host=sw.host,
            port=sw.port,
            username=sw.username,
            password=sw.password if password is None else password,
            device_params={"name": "junos"},
            hostkey_verify=False,
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        opened.append(session)
        return session

    yield open_session
    for session in opened:
        # A test that ran its own switch has stopped it by now; the session may not
        # have noticed yet, and its close then gets no answer or a closed connection.
        session.timeout = 2
        with contextlib.suppress(NCClientError):
            if session.connected:
                session.close_session()
