"""`metalnet demo --vm`: the whole lifecycle with real QEMU machines (TCG).

Two machines in two projects, one behind a Redfish BMC and one behind an IPMI BMC,
reached by metalnet's real sushy and pyghmi drivers. Each machine's firmware
(SeaBIOS + the iPXE ROM of its virtio NIC) network-boots the real ramdisk, whose real
agent writes the demo tenant image; the machine boots that disk and its OS takes its
tenant address from its network's dnsmasq; terminate erases the disk, whose file is
read back as zeros on the host. One run of the demo carries every assertion (a
machine boot under TCG costs tens of seconds, so CI runs it once).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable

import pytest
from netns.netns_env import leftovers, netns_marks

QEMU = shutil.which("qemu-system-x86_64")
NO_QEMU = "needs QEMU and its iPXE ROMs (apt-get install qemu-system-x86 ipxe-qemu)"
if QEMU is None and os.environ.get("METALNET_REQUIRE_NETNS") == "1":
    raise RuntimeError(f"VM tests required in CI (METALNET_REQUIRE_NETNS=1) but {NO_QEMU}")
pytestmark = [*netns_marks(), pytest.mark.skipif(QEMU is None, reason=NO_QEMU)]


def reached(final: dict) -> set[tuple[str, str]]:
    return {(src, dst) for src, row in final["reach"].items() for dst, ok in row.items() if ok}


def test_vm_demo_deploys_boots_isolates_and_erases_real_machines(
    cli: Callable[..., object],
) -> None:
    result = cli("demo", "--vm", "--json")
    report = json.loads(result.stdout)
    isolation, vm = report["isolation"], report["vm"]
    assert leftovers(isolation["lab_prefix"]) == []

    assert result.exit_code == 0, report["violations"]
    assert report["violations"] == []
    assert isolation["steps_failed"] == 0 and isolation["steps_passed"] > 0
    nodes = {row["node"]: row for row in report["nodes"]}
    assert set(nodes) == {"n1", "n2"}
    assert {row["project"] for row in nodes.values()} == {"alpha", "beta"}
    assert {m["bmc"] for m in vm["machines"].values()} == {"RedfishBmc", "IpmiBmc"}

    # Every machine: PXE into the ramdisk (agent started), its disk (tenant address),
    # PXE again for the erase, each seen on its serial console.
    for machine in vm["machines"].values():
        boots = machine["boots"]
        assert [b["device"] for b in boots] == ["pxe", "disk", "pxe"]
        assert boots[0]["to_agent_seconds"] and boots[2]["to_agent_seconds"]
        assert boots[1]["to_address_seconds"]
    assert len(vm["deploy_mb_per_s"]) == 2 and len(vm["erase_mb_per_s"]) == 2

    # After spawn each tenant OS holds its reservation and reaches its own network's
    # DHCP server only, measured from inside (console pings) and from the endpoints.
    spawned = isolation["final"]["after spawn"]
    assert spawned["ok"]
    assert spawned["addresses"] == {"n1": ["10.20.0.2"], "n2": ["10.30.0.2"]}
    dhcp = {name: f"dhcp-v{row['project_vlan']}" for name, row in nodes.items()}
    for name, server in dhcp.items():
        assert spawned["reach"][name], f"{name}'s console answered no probe"
        assert {dst for src, dst in reached(spawned) if src == name} == {server}
        assert {src for src, dst in reached(spawned) if dst == name} == {server}

    # The negative control: a port moved behind metalnet's back is caught twice.
    control = report["negative_control"]
    assert control["caught_by_commit_check"] and control["caught_by_matrix"]

    # After terminate: disks read back as zeros, machines off, nobody reached.
    checks = {c["check"]: c["ok"] for c in report["checks"]}
    for name in nodes:
        assert checks[f"{name} disk erased (its file read on the host)"]
        assert checks[f"{name} powered off"]
    terminated = isolation["final"]["after terminate"]
    assert all(name not in pair for pair in reached(terminated) for name in nodes)
