"""The controller's boot endpoints over real HTTP: scripts only while a task is open,
a fresh token per script that replaces the previous one, the ramdisk files."""

from __future__ import annotations

import httpx
from bootworld import MACS, BootWorld

from metalnet.agent.protocol import bearer, task_path
from metalnet.boot import ipxe
from metalnet.boot.cmdline import agent_boot

TIMEOUT = 10.0


def script_url(world: BootWorld, mac: str) -> str:
    return world.url + ipxe.NODE_ROUTE.format(mac=mac.replace(":", "-"))


def fetch_token(world: BootWorld, mac: str) -> str:
    reply = httpx.get(script_url(world, mac), timeout=TIMEOUT)
    assert reply.status_code == 200, reply.text
    kernel = next(line for line in reply.text.splitlines() if line.startswith("kernel "))
    entry = agent_boot(kernel)
    assert entry is not None
    return entry.token


def test_chain_script_points_ipxe_at_its_own_mac(controller: BootWorld) -> None:
    reply = httpx.get(controller.url + ipxe.CHAIN_ROUTE, timeout=TIMEOUT)
    assert reply.status_code == 200
    assert reply.text.splitlines() == [
        "#!ipxe",
        f"chain {controller.url}/v1/boot/node/${{mac:hexhyp}}.ipxe",
    ]


def test_no_script_without_an_open_task(controller: BootWorld) -> None:
    assert httpx.get(script_url(controller, MACS["n1"]), timeout=TIMEOUT).status_code == 404
    unknown = httpx.get(script_url(controller, "52:54:00:99:99:99"), timeout=TIMEOUT)
    assert unknown.status_code == 404
    controller.open_task("n1")
    controller.close_tasks()
    assert httpx.get(script_url(controller, MACS["n1"]), timeout=TIMEOUT).status_code == 404


def test_script_boots_the_ramdisk_with_the_agent_settings(controller: BootWorld) -> None:
    controller.open_task("n1")
    reply = httpx.get(script_url(controller, MACS["n1"].upper()), timeout=TIMEOUT)
    assert reply.status_code == 200
    lines = reply.text.splitlines()
    base = f"{controller.url}/v1/boot/ramdisk/"
    assert lines[0] == "#!ipxe"
    assert lines[1].startswith(f"kernel {base}vmlinuz initrd=initrd.img ")
    assert lines[2:] == [f"initrd {base}initrd.img", "boot"]
    entry = agent_boot(lines[1])
    assert entry is not None
    assert (entry.controller, entry.node) == (controller.url, "n1")
    # Only the node with the task gets a script.
    assert httpx.get(script_url(controller, MACS["n2"]), timeout=TIMEOUT).status_code == 404


def test_each_script_carries_a_new_token_and_kills_the_previous(controller: BootWorld) -> None:
    controller.open_task("n1")
    first = fetch_token(controller, MACS["n1"])
    second = fetch_token(controller, MACS["n1"])
    assert first != second
    task = controller.url + task_path("n1")
    assert httpx.get(task, headers=bearer(first), timeout=TIMEOUT).status_code == 401
    assert httpx.get(task, headers=bearer(second), timeout=TIMEOUT).status_code == 200


def test_bad_mac_is_a_400_naming_it(controller: BootWorld) -> None:
    reply = httpx.get(script_url(controller, "not-a-mac"), timeout=TIMEOUT)
    assert reply.status_code == 400
    assert "not-a-mac" in reply.text


def test_ramdisk_files_come_from_ramdisk_dir(controller: BootWorld) -> None:
    url = controller.url + ipxe.FILE_ROUTE.format(name="vmlinuz")
    missing = httpx.get(url, timeout=TIMEOUT)
    assert missing.status_code == 404
    assert "metalnet ramdisk build" in missing.text
    ramdisk = controller.db.settings.ramdisk_dir
    (controller.config.parent / "ramdisk").mkdir()
    for name, content in (("vmlinuz", b"kernel-bytes"), ("initrd.img", b"initrd-bytes")):
        (controller.config.parent / "ramdisk" / name).write_bytes(content)
        reply = httpx.get(controller.url + ipxe.FILE_ROUTE.format(name=name), timeout=TIMEOUT)
        assert reply.content == content
    assert ramdisk == str(controller.config.parent / "ramdisk")
    other = httpx.get(controller.url + ipxe.FILE_ROUTE.format(name="..%2Fboot.db"), timeout=10)
    assert other.status_code == 404
