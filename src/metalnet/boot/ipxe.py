"""The iPXE scripts the controller serves on the service network.

iPXE gets one fixed URL from DHCP (`CHAIN_ROUTE`); that script chains to the node's
own script, named by the MAC iPXE booted from, so dnsmasq needs no per-host boot
option. Script syntax and settings: https://ipxe.org/scripting, https://ipxe.org/cmd/kernel,
https://ipxe.org/cfg/mac (`${mac:hexhyp}` expands to aa-bb-cc-dd-ee-ff).
"""

from __future__ import annotations

from metalnet.boot.cmdline import AgentBoot

CHAIN_ROUTE = "/v1/boot/ipxe"
NODE_ROUTE = "/v1/boot/node/{mac}.ipxe"
FILE_ROUTE = "/v1/boot/ramdisk/{name}"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
# The serial console first, so a VM's (or a server's SOL) log shows the ramdisk.
CONSOLE_ARGS = "console=tty0 console=ttyS0,115200"


def chain_script(controller: str) -> str:
    """The script every iPXE client gets first: fetch the script for my MAC."""
    return f"#!ipxe\nchain {controller}{NODE_ROUTE.format(mac='${mac:hexhyp}')}\n"


def node_script(boot: AgentBoot) -> str:
    """Boot the ramdisk with the agent's settings on the kernel command line.

    `initrd=NAME` is what a UEFI boot needs: there iPXE starts the kernel as an EFI
    program, and its EFI stub loads the initrd itself, from the file system of the
    device the kernel came from. iPXE offers every downloaded image as a file of a
    virtual file system (src/interface/efi/efi_file.c), named by the last segment of
    its URL's path (image_set_uri in src/core/image.c), so NAME must be exactly that
    segment. Newer iPXE than the 2019 snapshot Debian 12 ships also hands the initrd
    over LoadFile2 (the kernel's LINUX_INITRD_MEDIA_GUID), which needs no name. Under
    BIOS iPXE places the initrd itself and the kernel ignores the word.
    """
    base = boot.controller + FILE_ROUTE.format(name="")
    args = f"initrd={INITRD} {CONSOLE_ARGS} {boot.kernel_args()}"
    return f"#!ipxe\nkernel {base}{KERNEL} {args}\ninitrd {base}{INITRD}\nboot\n"
