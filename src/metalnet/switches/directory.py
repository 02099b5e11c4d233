"""Where each switch is and which driver speaks to it, as the inventory records it.

The work queue opens sessions and validates changes through this directory; it
needs nothing else from the database, so it never calls back into the service above.
"""

from __future__ import annotations

import inspect

from metalnet import inventory
from metalnet.db.engine import Database
from metalnet.db.models import Switch
from metalnet.switches import driver_class, open_driver
from metalnet.switches.base import SwitchDriver, SwitchError, SwitchTarget
from metalnet.switches.hostkeys import HostKeyCheck


def target_of(switch: Switch) -> SwitchTarget:
    """Connection details of a stored switch."""
    return SwitchTarget(switch.name, switch.host, switch.port, switch.username, switch.password)


class SwitchDirectory:
    """Switch name -> driver class and open sessions, from the inventory."""

    def __init__(self, db: Database, timeout: float) -> None:
        self.db = db
        self.timeout = timeout
        self._drivers: dict[str, type[SwitchDriver]] = {}

    def _lookup(self, name: str) -> tuple[str, SwitchTarget]:
        with self.db.session() as session:
            switch = inventory.get_switch(session, name)
            return switch.driver, target_of(switch)

    def driver_class(self, name: str) -> type[SwitchDriver]:
        """Driver class of the named switch (for validation before sending), looked up once."""
        if name not in self._drivers:
            self._drivers[name] = driver_class(self._lookup(name)[0])
        return self._drivers[name]

    def connect(self, name: str) -> SwitchDriver:
        """An open session to the named switch; a driver that logs in over SSH does so only
        after the switch presented the host key recorded for it (`hostkeys`)."""
        driver, target = self._lookup(name)
        check = HostKeyCheck(self.db, name)
        options = {"host_key": check} if _takes_host_key(driver_class(driver)) else {}
        try:
            return open_driver(driver, target, self.timeout, **options)
        except SwitchError as exc:
            if check.refusal is not None:
                raise check.refusal from exc
            raise


def _takes_host_key(cls: type[SwitchDriver]) -> bool:
    return "host_key" in inspect.signature(cls).parameters
