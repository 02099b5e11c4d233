"""Juniper Junos driver (NETCONF over SSH with ncclient)."""

from __future__ import annotations

import re

# ge-/xe-/et-/mge- FPC/PIC/port with an optional :channel, or an aggregated
# ethernet ae0..ae127. Anything else (braces, quotes, spaces, newlines) is refused
# here, before a name can be rendered into configuration text.
INTERFACE_RE = re.compile(
    r"(?:(?:ge|xe|et|mge)-(?:[0-9]|[1-9][0-9])/(?:[0-9]|[1-9][0-9])/(?:[0-9]|[1-9][0-9]{1,2})"
    r"(?::[0-3])?"
    r"|ae(?:[0-9]|[1-9][0-9]|1[01][0-9]|12[0-7]))"
)


def check_junos_interface(interface: str) -> str:
    """Return `interface` unchanged if it is a Junos switch-port name, else raise ValueError."""
    if not isinstance(interface, str) or not INTERFACE_RE.fullmatch(interface):
        raise ValueError(
            f"interface {interface!r} is not a Junos port name "
            "(expected e.g. ge-0/0/1, xe-0/1/2:3 or ae0..ae127)"
        )
    return interface
