"""Switch drivers, found by name in the entry-point group `metalnet.switch_drivers`."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from metalnet.errors import InputError
from metalnet.switches.base import SwitchDriver, SwitchTarget

GROUP = "metalnet.switch_drivers"


def known_drivers() -> list[str]:
    """Names of the installed switch drivers, sorted."""
    return sorted(ep.name for ep in entry_points(group=GROUP))


@cache
def driver_class(name: str) -> type[SwitchDriver]:
    """The driver class registered as `name`; InputError naming the known ones otherwise."""
    for ep in entry_points(group=GROUP, name=name):
        return ep.load()
    raise InputError(
        f"unknown switch driver {name!r}: installed drivers are {', '.join(known_drivers())}"
    )


def check_interface(driver: str, interface: str) -> str:
    """Check an interface name against the driver's grammar, as an InputError."""
    try:
        return driver_class(driver).check_interface(interface)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def open_driver(
    driver: str, target: SwitchTarget, timeout: float, **options: object
) -> SwitchDriver:
    """An opened session to the switch; `options` go to the driver's constructor."""
    instance = driver_class(driver)(target, timeout=timeout, **options)
    instance.open()
    return instance
