"""The agent's settings on the ramdisk's kernel command line: written by the iPXE
script (metalnet.boot.ipxe), read by the ramdisk (metalnet.boot.ramdisk_agent).

Kept free of database imports: the ramdisk carries this module and not SQLAlchemy.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

PREFIX = "metalnet."


@dataclass(frozen=True)
class AgentBoot:
    """What the ramdisk's agent is started with."""

    controller: str
    node: str
    token: str

    def kernel_args(self) -> str:
        """The `metalnet.*=` words of the kernel command line (values need no quoting)."""
        fields = {"controller": self.controller, "node": self.node, "token": self.token}
        return " ".join(f"{PREFIX}{key}={value}" for key, value in fields.items())


def parse_cmdline(cmdline: str) -> dict[str, str]:
    """The `metalnet.KEY=VALUE` words of a kernel command line (/proc/cmdline), by KEY."""
    words = (word.partition("=") for word in shlex.split(cmdline))
    return {key[len(PREFIX) :]: value for key, _, value in words if key.startswith(PREFIX)}


def agent_boot(cmdline: str) -> AgentBoot | None:
    """The agent's settings from a kernel command line, or None when one is missing."""
    values = parse_cmdline(cmdline)
    try:
        return AgentBoot(values["controller"], values["node"], values["token"])
    except KeyError:
        return None
