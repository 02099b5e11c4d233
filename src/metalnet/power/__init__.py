"""Power control of nodes through their BMCs, with a driver chosen by the BMC URL.

A node's BMC URL says both where the BMC is and which protocol it speaks:

- ``redfish+http://HOST:PORT/redfish/v1/Systems/ID`` and ``redfish+https://...``
  (``redfish://`` means HTTPS, as BMCs serve Redfish over TLS by default); the path
  names the ComputerSystem and may be left out when the BMC manages one system;
- ``ipmi://HOST[:PORT]`` for IPMI 2.0 over LAN (RMCP+, port 623 by default).

Drivers are looked up by entry point (group ``metalnet.power_drivers``) so that
another package can add a protocol without touching metalnet.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from urllib.parse import SplitResult, urlsplit

from metalnet.errors import InputError
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

__all__ = [
    "DEFAULT_TIMEOUT",
    "SCHEME_DRIVERS",
    "BmcAuthError",
    "BmcTarget",
    "BmcUnreachable",
    "BootDevice",
    "PowerDriver",
    "PowerError",
    "PowerState",
    "check_bmc_url",
    "driver_for",
]

ENTRY_POINT_GROUP = "metalnet.power_drivers"

SCHEME_DRIVERS = {
    "redfish": "redfish",
    "redfish+http": "redfish",
    "redfish+https": "redfish",
    "ipmi": "ipmi",
}
"""URL scheme -> name of the driver's entry point."""

_EXPECTED = "expected redfish+http(s)://HOST:PORT/redfish/v1/Systems/ID or ipmi://HOST:PORT"


def _split(url: str) -> SplitResult:
    """Parse `url` or raise InputError naming it (urlsplit itself rejects some garbage)."""
    try:
        return urlsplit(url)
    except ValueError as exc:
        raise InputError(f"invalid BMC URL {url!r}: {exc}") from None


def check_bmc_url(url: str) -> str:
    """Return `url` if it is a BMC URL metalnet can use; otherwise raise InputError.

    InputError is a ValueError. Credentials in the URL are refused because URLs are
    shown in listings and logs; they belong in the node's BMC username and password.
    """
    if not isinstance(url, str) or any(c.isspace() or not c.isprintable() for c in url):
        raise InputError(f"invalid BMC URL {url!r}: contains whitespace or control characters")
    parts = _split(url)
    if parts.scheme not in SCHEME_DRIVERS:
        raise InputError(f"invalid BMC URL {url!r}: unknown scheme {parts.scheme!r}; {_EXPECTED}")
    if "@" in parts.netloc:
        raise InputError(
            f"invalid BMC URL {url!r}: put credentials in the BMC username/password, not the URL"
        )
    if not parts.hostname:
        raise InputError(f"invalid BMC URL {url!r}: no host; {_EXPECTED}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise InputError(f"invalid BMC URL {url!r}: port must be 1-65535")
    if parts.scheme == "ipmi" and parts.path not in ("", "/"):
        raise InputError(f"invalid BMC URL {url!r}: ipmi://HOST:PORT takes no path")
    if parts.query or parts.fragment:
        raise InputError(f"invalid BMC URL {url!r}: no query or fragment allowed")
    return url


def driver_for(target: BmcTarget, timeout: float = DEFAULT_TIMEOUT) -> PowerDriver:
    """A driver for `target`'s BMC, chosen by its URL scheme; InputError if unusable.

    Construction does not contact the BMC: the first call does, so building drivers
    for a whole rack is cheap and a dead BMC fails that call, within `timeout`.
    """
    check_bmc_url(target.url)
    name = SCHEME_DRIVERS[_split(target.url).scheme]
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        raise InputError(f"no power driver {name!r} installed for BMC URL {target.url!r}")
    driver_cls = next(iter(found)).load()
    return driver_cls(target, timeout=timeout)
