"""Simulated BMCs that speak real Redfish and real IPMI on 127.0.0.1.

The power drivers are tested over the wire, and the lab powers its simulated nodes
through the same drivers the controller uses on real servers. Each simulated node
has one `SimNodePower` (power.py: power state, next boot device); a `RedfishBmc`
(redfish.py) or an `IpmiBmc` (ipmi.py) serves it; both share `SimBmc` (base.py).
"""

from metalnet.sim.bmc.base import SimBmc
from metalnet.sim.bmc.ipmi import IpmiBmc
from metalnet.sim.bmc.power import InvalidPowerTransition, PowerCallback, PowerEvent, SimNodePower
from metalnet.sim.bmc.redfish import RedfishBmc, RedfishResponse

__all__ = [
    "InvalidPowerTransition",
    "IpmiBmc",
    "PowerCallback",
    "PowerEvent",
    "RedfishBmc",
    "RedfishResponse",
    "SimBmc",
    "SimNodePower",
]
