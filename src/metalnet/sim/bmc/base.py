"""What every simulated BMC does, whatever protocol it speaks: credentials and faults.

Both kinds can be told to stall (accept requests and never answer) and to refuse
every login, to test that drivers fail cleanly.
"""

from __future__ import annotations

import abc
import hmac
import threading

from metalnet.sim.bmc.power import SimNodePower


class SimBmc(abc.ABC):
    """A simulated BMC for one node, serving in a background thread on 127.0.0.1.

    `port=0` picks a free port; `port` holds the real one after `start()`.
    """

    scheme: str

    def __init__(
        self,
        power: SimNodePower,
        username: str = "admin",
        password: str = "password",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.power = power
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self._answering = threading.Event()
        self._answering.set()
        self._refusing = False

    @property
    def node(self) -> str:
        """The node this BMC manages."""
        return self.power.node

    @property
    def url(self) -> str:
        """The BMC URL a node is enrolled with (valid once started)."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def stalled(self) -> bool:
        """True while the BMC swallows requests without answering."""
        return not self._answering.is_set()

    def stall(self, stalled: bool = True) -> None:
        """Stop answering (requests are received and ignored) or, with False, answer again."""
        if stalled:
            self._answering.clear()
        else:
            self._answering.set()

    def refuse_credentials(self, refuse: bool = True) -> None:
        """Refuse every login, even with the right username and password."""
        self._refusing = refuse

    def password_for(self, username: str) -> str | None:
        """The password `username` must present, or None if the user is unknown or refused."""
        if self._refusing or username != self.username:
            return None
        return self.password

    def credentials_ok(self, username: str, password: str) -> bool:
        """Constant-time check of a username and password."""
        expected = self.password_for(username)
        return expected is not None and hmac.compare_digest(expected, password)

    @abc.abstractmethod
    def start(self) -> SimBmc:
        """Bind the port and start serving in a background thread."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop serving and release the port."""

    def __enter__(self) -> SimBmc:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
