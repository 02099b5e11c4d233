"""Root-mode data plane for the lab: namespaces as nodes, Linux bridges as VLANs.

`NetLab` builds it and tears it down; `cleanup_stale` removes what a killed lab
left behind. See `lab.py` for why every address lives in a namespace of its own.
"""

from metalnet.sim.netlab.cleanup import PREFIX_ROOT, cleanup_stale
from metalnet.sim.netlab.endpoints import DhcpServer, Endpoint, HostEndpoint, LabNode
from metalnet.sim.netlab.lab import NetLab
from metalnet.sim.netlab.probe import Matrix
from metalnet.sim.netlab.system import CommandFailed, NetLabError, NetLabNeedsRoot, ToolMissing

__all__ = [
    "PREFIX_ROOT",
    "CommandFailed",
    "DhcpServer",
    "Endpoint",
    "HostEndpoint",
    "LabNode",
    "Matrix",
    "NetLab",
    "NetLabError",
    "NetLabNeedsRoot",
    "ToolMissing",
    "cleanup_stale",
]
