"""Rules that real firmware holds the boot server to.

- dnsmasq answers each client with a binary its firmware runs: iPXE (option 175)
  the HTTP chain URL; x86 BIOS the BIOS iPXE; x86-64 UEFI `ipxe.efi`; any other
  architecture no boot file at all.
- The node's iPXE script names its initrd the way iPXE does, so a UEFI kernel finds
  it. Under UEFI the kernel's EFI stub opens the file `initrd=` names on iPXE's
  virtual file system, where each downloaded image is named by the last segment of
  its URL's path (iPXE's image_set_uri, src/core/image.c).

Both are proven with real firmware by tests/boot/test_ramdisk_qemu.py's `uefi-*`
cases (OVMF sends architecture 7; "EFI stub: Loaded initrd from command line
option"); tests/boot/test_boot_server_netns.py asks the real dnsmasq.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from metalnet.boot import ipxe
from metalnet.boot.cmdline import AgentBoot
from metalnet.dhcp import DhcpNetwork, PxeOptions, render_dnsmasq

CHAIN_URL = "http://10.30.0.1:8470" + ipxe.CHAIN_ROUTE
OPTION_NUMBERS = {"175": 175, "option:client-arch": 93}
BIOS, X86_64_UEFI = 0, (7, 9)  # option 93 values, RFC 4578 2.1 / IANA's registry
LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
TOKEN = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=1, max_size=40)


@given(
    host=LABEL,
    port=st.integers(1, 65535),
    prefix=st.lists(LABEL, max_size=3),
    node=TOKEN,
    token=TOKEN,
)
def test_initrd_word_names_the_image_ipxe_downloads(
    host: str, port: int, prefix: list[str], node: str, token: str
) -> None:
    controller = f"http://{host}:{port}" + "".join(f"/{part}" for part in prefix)
    lines = ipxe.node_script(AgentBoot(controller, node, token)).splitlines()
    kernel = next(line.split() for line in lines if line.startswith("kernel "))
    initrds = [line.split() for line in lines if line.startswith("initrd ")]
    assert len(initrds) == 1 and len(initrds[0]) == 2  # one image, no --name given
    image_name = urlsplit(initrds[0][1]).path.rsplit("/", 1)[1]
    assert [word for word in kernel[2:] if word.startswith("initrd=")] == [f"initrd={image_name}"]
    assert lines[-1] == "boot"


def boot_files(config: str, sent: dict[int, int]) -> list[str]:
    """The boot files whose dhcp-boot line applies to a client that sent `sent`
    (option number -> value), read the way dnsmasq's manual describes: `dhcp-match`
    without a value tags a client that sends the option, with a value one whose
    option equals it; `dhcp-boot` applies when every `tag:X` is set and no
    `tag:!X` is."""
    tags = set()
    for line in config.splitlines():
        if line.startswith("dhcp-match=set:"):
            tag, option, *value = line.removeprefix("dhcp-match=set:").split(",")
            number = OPTION_NUMBERS[option]
            if number in sent and (not value or int(value[0]) == sent[number]):
                tags.add(tag)
    files = []
    for line in config.splitlines():
        if line.startswith("dhcp-boot="):
            fields = line.removeprefix("dhcp-boot=").split(",")
            conditions = [f.removeprefix("tag:") for f in fields if f.startswith("tag:")]
            if all((c[1:] not in tags) if c.startswith("!") else (c in tags) for c in conditions):
                files.append(fields[len(conditions)])
    return files


@given(
    is_ipxe=st.booleans(),
    arch=st.none() | st.sampled_from([BIOS, *X86_64_UEFI]) | st.integers(0, 0x30),
    with_efi=st.booleans(),
)
def test_each_firmware_gets_a_binary_it_runs_or_none(
    is_ipxe: bool, arch: int | None, with_efi: bool
) -> None:
    server = ipaddress.IPv4Address("10.30.0.1")
    pxe = PxeOptions(
        "undionly.kpxe", server, ipxe_url=CHAIN_URL, tftp_root=Path("/usr/lib/ipxe"),
        efi_boot_file="ipxe.efi" if with_efi else None,
    )  # fmt: skip
    net = DhcpNetwork("service", 10, ipaddress.IPv4Network("10.30.0.0/24"), server, "eth0", pxe=pxe)
    sent = {175: 1} if is_ipxe else {}
    if arch is not None:
        sent[93] = arch
    if is_ipxe:
        expected = [CHAIN_URL]
    elif arch is None or arch == BIOS:
        expected = ["undionly.kpxe"]
    elif arch in X86_64_UEFI and with_efi:
        expected = ["ipxe.efi"]
    else:
        expected = []
    assert boot_files(render_dnsmasq(net), sent) == expected
