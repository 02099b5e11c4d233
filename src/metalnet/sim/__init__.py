"""Simulators that mirror the product, so metalnet runs end to end without hardware.

- `switch`: a Junos EX switch answering NETCONF over SSH (what `switches/` drives);
- `bmc`: BMCs answering Redfish and IPMI (what `power/` drives);
- `lab`: nodes, the data plane, the isolation matrix, the demo and `metalnet lab up`,
  which wire switches, BMCs and nodes into the physical world metalnet manages.
"""
