"""The ramdisk's program: `python3 -m metalnet.boot.ramdisk_agent`, started by its /init.

It reads the agent's settings from the kernel command line (metalnet.lifecycle.boot
is the one parser) and runs the `metalnet agent` command itself, so the ramdisk runs
exactly the agent the tests run. The disk is `metalnet.disk=` when the boot entry
names one, else the first fixed disk the kernel found.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from metalnet.boot.cmdline import agent_boot, parse_cmdline
from metalnet.cli.agent import agent
from metalnet.errors import MetalnetError

TOKEN_ENV = "METALNET_AGENT_TOKEN"
NOT_DISKS = ("loop", "ram", "sr", "fd", "zram", "dm-", "md")


def first_disk(sys_block: Path = Path("/sys/block")) -> str | None:
    """The first fixed, non-virtual block device (vda, sda, nvme0n1...), as /dev/NAME."""
    for device in sorted(sys_block.iterdir()) if sys_block.is_dir() else ():
        removable = device / "removable"
        if device.name.startswith(NOT_DISKS):
            continue
        if removable.exists() and removable.read_text().strip() != "0":
            continue
        return f"/dev/{device.name}"
    return None


def agent_argv(cmdline: str, sys_block: Path = Path("/sys/block")) -> tuple[list[str], str]:
    """`metalnet agent`'s arguments and its token for this kernel command line."""
    entry = agent_boot(cmdline)
    if entry is None:
        raise MetalnetError(
            "the kernel command line lacks metalnet.controller=, metalnet.node= or "
            "metalnet.token=: boot this ramdisk through the controller's iPXE script"
        )
    disk = parse_cmdline(cmdline).get("disk") or first_disk(sys_block)
    if disk is None:
        raise MetalnetError(f"no disk found in {sys_block} and no metalnet.disk= given")
    argv = ["--controller", entry.controller, "--node", entry.node, "--token-env", TOKEN_ENV]
    return [*argv, "--disk", disk], entry.token


def main() -> None:
    """Run the agent for this boot; exit with its code (the /init reports it)."""
    try:
        argv, token = agent_argv(Path("/proc/cmdline").read_text())
    except MetalnetError as exc:
        print(f"metalnet ramdisk: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    os.environ[TOKEN_ENV] = token
    command = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    command.command()(agent)
    try:
        command(args=argv, prog_name="metalnet agent")
    except MetalnetError as exc:
        print(f"metalnet agent: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
