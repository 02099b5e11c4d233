"""The one drift rule: when a port on the device is what the database wants.

`switch check`, `switch ports`, the reconciler and the isolation invariant all ask
this module, so a port cannot be "in sync" for one of them and drift for another.
A port is in sync only if it is enabled or disabled as desired, an access port,
carries exactly the desired VLAN as its one active member, and has no native VLAN.
Anything else (a trunk, an extra member, a native VLAN left over, a deactivated or
missing statement, a port disabled by hand that is wanted enabled) is drift.
"""

from __future__ import annotations

from metalnet.switches.base import PortState


def in_sync(desired: int | None, actual: PortState | None, enabled: bool = True) -> bool:
    """Whether the device's port state matches the desired VLAN and `enabled` exactly."""
    if desired is None:
        return True
    if actual is None:
        return False
    return (
        actual.enabled == enabled
        and actual.mode == "access"
        and actual.vlans == (desired,)
        and actual.native_vlan is None
    )


def describe(actual: PortState | None) -> str:
    """The device's side of a drift, in one short phrase for tables and logs."""
    if actual is None:
        return "not configured"
    parts = [actual.mode]
    parts.append("VLAN " + ",".join(map(str, actual.vlans)) if actual.vlans else "no VLAN")
    if actual.native_vlan is not None:
        parts.append(f"native {actual.native_vlan}")
    if not actual.enabled:
        parts.append("disabled")
    return " ".join(parts)


def desired_text(vlan: int | None, enabled: bool = True) -> str:
    """The database's side of a drift, in the same words as `describe`."""
    if vlan is None:
        return "none"
    return f"VLAN {vlan}" + ("" if enabled else " disabled")
