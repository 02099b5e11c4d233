"""Boot configuration handed to a node that PXE-boots into the provisioning ramdisk.

Real deployments serve this per-MAC file from their TFTP/HTTP boot server; the kernel
command line carries what the agent needs (controller URL, node name, token). The
lab reads the same file to start the agent, so the controller behaves identically.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AgentBoot:
    """What the ramdisk's agent is started with."""

    controller: str
    node: str
    token: str


def boot_file(boot_dir: str | Path, mac: str) -> Path:
    """pxelinux-style per-MAC file name: 01-aa-bb-cc-dd-ee-ff."""
    return Path(boot_dir) / ("01-" + mac.replace(":", "-"))


def write(boot_dir: str | Path, mac: str, boot: AgentBoot) -> Path:
    """Write the node's ramdisk boot entry, readable only by the boot server's user."""
    path = boot_file(boot_dir, mac)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = {
        "metalnet.controller": boot.controller,
        "metalnet.node": boot.node,
        "metalnet.token": boot.token,
    }
    cmdline = " ".join(f"{key}={shlex.quote(value)}" for key, value in args.items())
    text = f"DEFAULT ramdisk\nLABEL ramdisk\n  KERNEL metalnet-ramdisk\n  APPEND {cmdline}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def read(boot_dir: str | Path, mac: str) -> AgentBoot | None:
    """Parse the node's boot entry (what a ramdisk's init does with /proc/cmdline)."""
    path = boot_file(boot_dir, mac)
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.strip().startswith("APPEND "):
            words = dict(w.split("=", 1) for w in shlex.split(line.strip()[len("APPEND ") :]))
            return AgentBoot(
                words["metalnet.controller"], words["metalnet.node"], words["metalnet.token"]
            )
    return None


def remove(boot_dir: str | Path, mac: str) -> None:
    """Drop the entry so the node's next network boot does not start an agent."""
    boot_file(boot_dir, mac).unlink(missing_ok=True)
