"""The service network's DHCP and TFTP server, as the database and settings describe it.

Every NIC the database knows gets a reservation on the service network (the
renderer ignores any other MAC). NICs take the subnet's host addresses in the order
they were enrolled (the boot server's skipped), so no allocation table is needed;
removing a node may move later NICs' addresses, which only matters at their next
network boot, when they ask again anyway.
Firmware PXE ROMs get an iPXE binary from Debian's `ipxe` package over TFTP; iPXE
then gets the controller's chain script over HTTP (metalnet.boot.ipxe).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from metalnet.boot import ipxe
from metalnet.config import Settings
from metalnet.db.models import Nic
from metalnet.dhcp import DhcpHost, DhcpNetwork, PxeOptions
from metalnet.errors import ConfigError

log = logging.getLogger(__name__)

IPXE_DIR = Path("/usr/lib/ipxe")  # Debian's `ipxe` package
BIOS_IPXE = "undionly.kpxe"  # chain-loads over the firmware's own UNDI driver
EFI_IPXE = "ipxe.efi"
REQUIRED = ("service_interface", "service_cidr", "boot_server")


def check_settings(settings: Settings) -> None:
    """Refuse to run a boot server whose settings are incomplete, naming the key."""
    for key in REQUIRED:
        if not getattr(settings, key):
            raise ConfigError(f"config key {key} is not set: the boot server needs it")
    if not (IPXE_DIR / BIOS_IPXE).is_file():
        raise ConfigError(f"{IPXE_DIR / BIOS_IPXE} is missing (Debian: apt-get install ipxe)")


def service_network(session: Session, settings: Settings, state_dir: Path) -> DhcpNetwork:
    """The service network's dnsmasq description: one reservation per known NIC."""
    check_settings(settings)
    cidr = settings.service_cidr
    server = settings.boot_server
    assert cidr is not None and server is not None  # check_settings
    free = [address for address in cidr.hosts() if address != server]
    nics = list(session.scalars(select(Nic).order_by(Nic.id)))
    if len(nics) > len(free):
        log.warning("service network %s has room for %d of %d NICs", cidr, len(free), len(nics))
    hosts = [DhcpHost(n.mac, a, _hostname(n)) for n, a in zip(nics, free, strict=False)]
    return DhcpNetwork(
        "service",
        settings.service_vlan,
        cidr,
        server,
        settings.service_interface,
        hosts=hosts,
        pxe=PxeOptions(
            BIOS_IPXE,
            server,
            ipxe_url=settings.controller_url + ipxe.CHAIN_ROUTE,
            efi_boot_file=EFI_IPXE,
            tftp_root=IPXE_DIR,
        ),
        log_file=state_dir / "dnsmasq.log",
        lease_file=state_dir / "dnsmasq.leases",
    )


def _hostname(nic: Nic) -> str:
    """The node's name as one DNS label; a second NIC of a node is told its MAC too."""
    label = nic.node.name.replace(".", "-").replace("_", "-")
    if nic is not nic.node.nics[0]:
        label += "-" + nic.mac.replace(":", "")[6:]
    return label[:63].strip("-")
