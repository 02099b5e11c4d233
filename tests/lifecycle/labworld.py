"""A lab (simulated switches, BMCs, disks, agents) plus a database, for lifecycle tests."""

from metalnet.sim.lab.world import World, world_with

__all__ = ["World", "world_with"]
