"""Root-mode data plane for the lab: namespaces as nodes, Linux bridges as VLANs.

`NetLab` builds it and tears it down; `cleanup_stale` removes what a killed lab
left behind. See `netlab.py` for why every address lives in a namespace of its own.
"""

from metalnet.sim.lab.netns.cleanup import PREFIX_ROOT, cleanup_stale
from metalnet.sim.lab.netns.endpoints import (
    DhcpServer,
    Endpoint,
    HostEndpoint,
    NodeEndpoint,
    TapPort,
)
from metalnet.sim.lab.netns.netlab import NetLab
from metalnet.sim.lab.netns.probe import Matrix
from metalnet.sim.lab.netns.system import CommandFailed, NetLabError, NetLabNeedsRoot, ToolMissing

__all__ = [
    "PREFIX_ROOT",
    "CommandFailed",
    "DhcpServer",
    "Endpoint",
    "HostEndpoint",
    "Matrix",
    "NetLab",
    "NetLabError",
    "NetLabNeedsRoot",
    "NodeEndpoint",
    "TapPort",
    "ToolMissing",
    "cleanup_stale",
]
