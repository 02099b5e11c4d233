"""Redfish power driver, built on OpenStack's `sushy` client library.

sushy does the Redfish work (service root discovery, session login with a fallback
to HTTP basic auth, ETags, allowed-value checks). This module adds what metalnet
needs around it: a connector whose every HTTP request is bounded by the driver's
timeout and tried once (sushy's default retries a dead BMC for many seconds), and
the translation of sushy's exceptions into errors that name the node and its BMC.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import sushy
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_exc
from sushy.connector import Connector
from sushy.resources.system.system import System

from metalnet.power.base import (
    DEFAULT_TIMEOUT,
    BmcAuthError,
    BmcTarget,
    BmcUnreachable,
    BootDevice,
    PowerDriver,
    PowerError,
    PowerState,
)

LOG = logging.getLogger(__name__)

_HTTP_SCHEMES = {"redfish": "https", "redfish+https": "https", "redfish+http": "http"}
_POWER_STATES = {
    sushy.PowerState.ON: PowerState.ON,
    sushy.PowerState.POWERING_ON: PowerState.ON,
    sushy.PowerState.OFF: PowerState.OFF,
    sushy.PowerState.POWERING_OFF: PowerState.OFF,
}
_BOOT_SOURCES = {BootDevice.PXE: sushy.BootSource.PXE, BootDevice.DISK: sushy.BootSource.HDD}


def split_redfish_url(url: str) -> tuple[str, str | None]:
    """(base URL sushy connects to, ComputerSystem path or None for the only system)."""
    parts = urlsplit(url)
    base = f"{_HTTP_SCHEMES[parts.scheme]}://{parts.netloc}"
    path = parts.path.rstrip("/")
    return base, path or None


class RedfishDriver(PowerDriver):
    """Power control through a Redfish ComputerSystem's Reset action and Boot override."""

    def __init__(self, target: BmcTarget, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(target, timeout)
        self._base_url, self._system_path = split_redfish_url(target.url)
        self._root: sushy.Sushy | None = None
        self._auth: sushy_auth.SessionOrBasicAuth | None = None
        self._connector: Connector | None = None

    def _do_power_on(self) -> None:
        with self._translated():
            system = self._system()
            if _power_state(self, system) is PowerState.OFF:
                system.reset_system(sushy.ResetType.ON)

    def _do_power_off(self) -> None:
        with self._translated():
            system = self._system()
            if _power_state(self, system) is PowerState.ON:
                system.reset_system(sushy.ResetType.FORCE_OFF)

    def _do_reboot(self) -> None:
        with self._translated():
            system = self._system()
            if _power_state(self, system) is PowerState.ON:
                system.reset_system(sushy.ResetType.FORCE_RESTART)
            else:
                system.reset_system(sushy.ResetType.ON)

    def _do_power_state(self) -> PowerState:
        with self._translated():
            return _power_state(self, self._system())

    def _do_set_boot_device(self, device: BootDevice, persistent: bool) -> None:
        enabled = (
            sushy.BootSourceOverrideEnabled.CONTINUOUS
            if persistent
            else sushy.BootSourceOverrideEnabled.ONCE
        )
        with self._translated():
            self._system().set_system_boot_options(target=_BOOT_SOURCES[device], enabled=enabled)

    def close(self) -> None:
        """Delete the Redfish session (if one was opened) and close the HTTP connection."""
        auth, connector = self._auth, self._connector
        self._abandon()
        if auth is not None:
            try:
                auth.close()
            except sushy_exc.SushyError as exc:
                LOG.warning("%s", self.error(PowerError, f"could not log out: {exc}"))
        if connector is not None:
            connector.close()

    def _abandon(self) -> None:
        """Forget the client so the next call logs in afresh."""
        self._root = self._auth = self._connector = None

    def _client(self) -> sushy.Sushy:
        """The logged-in sushy root, created on first use."""
        if self._root is None:
            connector = Connector(
                self._base_url,
                # One attempt per request: the driver's deadline, not sushy's retry
                # loop (3 tries, seconds apart), decides when a BMC is unreachable.
                server_side_retries=1,
                server_side_retries_delay=1,
                default_request_timeout=self.timeout,
                connect_timeout=self.timeout,
            )
            auth = sushy_auth.SessionOrBasicAuth(self.target.username, self.target.password)
            self._root = sushy.Sushy(self._base_url, auth=auth, connector=connector)
            self._auth, self._connector = auth, connector
        return self._root

    def _system(self) -> System:
        """The node's ComputerSystem, fetched fresh so its state is current."""
        return self._client().get_system(self._system_path)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn sushy's exceptions into PowerErrors naming the node and its BMC."""
        try:
            yield
        except sushy_exc.ConnectionError as exc:
            self._abandon()
            raise self.error(BmcUnreachable, f"no answer: {_innermost(exc)}") from exc
        except sushy_exc.AccessError as exc:
            raise self.error(BmcAuthError, f"credentials refused (HTTP {exc.status_code})") from exc
        except sushy_exc.SushyError as exc:
            raise self.error(PowerError, str(exc)) from exc


def _power_state(driver: RedfishDriver, system: System) -> PowerState:
    """Map Redfish's PowerState (including transitions) onto on/off."""
    state = _POWER_STATES.get(system.power_state)
    if state is None:
        raise driver.error(PowerError, f"unexpected power state {system.power_state!r}")
    return state


def _innermost(exc: BaseException) -> BaseException:
    """The root cause under sushy's and requests' wrappers ("[Errno 111] Connection refused")."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    return exc
