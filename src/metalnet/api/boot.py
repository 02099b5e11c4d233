"""The boot server's HTTP side: iPXE scripts, and the ramdisk's kernel and initrd.

No bearer token here: firmware cannot send one. The per-node script is served only
while the node has an open ramdisk task (metalnet.lifecycle.boot), with a token issued
for that response; any other MAC gets 404 and no token exists for it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse

from metalnet.api.errors import ERROR_RESPONSES
from metalnet.api.routing import Route
from metalnet.boot import ipxe
from metalnet.errors import NotFound
from metalnet.lifecycle import boot
from metalnet.validate import normalize_mac

router = APIRouter(tags=["boot"], responses=ERROR_RESPONSES, route_class=Route)
RAMDISK_FILES = (ipxe.KERNEL, ipxe.INITRD)


@router.get(ipxe.CHAIN_ROUTE, response_class=PlainTextResponse)
def chain(request: Request) -> str:
    """What DHCP points iPXE at: chain to the script for the booting MAC."""
    return ipxe.chain_script(request.app.state.db.settings.controller_url)


@router.get(ipxe.NODE_ROUTE, response_class=PlainTextResponse)
def node_script(mac: str, request: Request) -> str:
    """The node's ramdisk script with a fresh one-time token, or 404."""
    normalized = normalize_mac(mac)  # a bad MAC is a 400 naming it (metalnet.api.errors)
    db = request.app.state.db
    with db.session() as session:
        entry = boot.entry_for(session, normalized, db.settings.controller_url)
    if entry is None:
        raise NotFound(f"no ramdisk boot for MAC {normalized}: no open task")
    return ipxe.node_script(entry)


@router.get(ipxe.FILE_ROUTE)
def ramdisk_file(name: str, request: Request) -> FileResponse:
    """The kernel or the initrd from `ramdisk_dir` (built by `metalnet ramdisk build`)."""
    if name not in RAMDISK_FILES:
        raise NotFound(f"no ramdisk file {name!r}: only {', '.join(RAMDISK_FILES)}")
    path = Path(request.app.state.db.settings.ramdisk_dir) / name
    if not path.is_file():
        raise NotFound(f"{path} is missing: run `metalnet ramdisk build`")
    return FileResponse(path, media_type="application/octet-stream")
