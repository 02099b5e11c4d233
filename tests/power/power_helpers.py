"""Helpers shared by the power tests (a module, not conftest, so tests can import it)."""

from __future__ import annotations

import socket

from metalnet.power import BmcTarget, BootDevice
from metalnet.sim.bmc import PowerEvent, SimBmc

Event = tuple[PowerEvent, BootDevice | None]

DRIVER_TIMEOUT = 5.0
"""Generous for a BMC that answers; tests of silent BMCs pass their own short timeout."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def target(bmc: SimBmc, password: str | None = None) -> BmcTarget:
    """The BMC target a node served by `bmc` is enrolled with."""
    secret = bmc.password if password is None else password
    return BmcTarget(bmc.node, bmc.url, bmc.username, secret)
