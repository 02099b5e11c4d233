"""The lab: the physical world metalnet manages, simulated on one machine.

- `nodes`: one simulated server (NIC and cabling, BMC, disk, running agent or image);
- `lab`: switches, BMCs, nodes and an image server wired together (no root needed);
- `dataplane` and `netns`: root mode, where nodes are network namespaces, VLANs are
  bridges and every network has a real dnsmasq;
- `isolation`: the reachability matrix measured with packets against the design;
- `world`: a lab plus a database with projects, for tests and benchmarks;
- `demo`: `metalnet demo`, the whole lifecycle checked at every step;
- `up`: `metalnet lab up`, a lab with a running controller to try metalnet by hand.

The package imports nothing itself, so that running one of its small modules (the
namespace relay) does not load the controller.
"""
