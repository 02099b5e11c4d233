"""`metalnet demo --netns`: tenant isolation proven with packets, and a leak caught.

The demo's lab runs on a real data plane (namespaces, a bridge per VLAN, dnsmasq per
network); after every lifecycle step it measures ARP reachability between all
nodes and the service endpoint and compares it with what the database allows. The
negative control moves a port behind metalnet's back and expects both the matrix
and metalnet's own drift check to notice. Teardown is checked with `ip` itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netns_env import NOBODY, leftovers, netns_marks

from metalnet.lifecycle.states import SPAWN, TERMINATE
from metalnet.sim.lab.demo import Demo, run_demo
from metalnet.sim.lab.netns.cleanup import workdir_for

pytestmark = netns_marks()

PREFIX_RE = re.compile(r"data plane (mnl[0-9a-f]{4})")


class Progress:
    """Collects the demo's progress lines and the data plane prefix they announce;
    raises at the line starting with `fail_at`, to break a demo half-way."""

    def __init__(self) -> None:
        self.prefixes: list[str] = []
        self.fail_at: str | None = None

    def __call__(self, message: str) -> None:
        if match := PREFIX_RE.search(message):
            self.prefixes.append(match.group(1))
        if self.fail_at and message.startswith(self.fail_at):
            raise RuntimeError(f"boom at {message!r}")


def assert_removed(prefix: str) -> None:
    """No namespace, link or work directory of the lab `prefix` is left."""
    assert leftovers(prefix) == []
    assert not workdir_for(prefix).exists()


@pytest.fixture
def progress() -> Iterator[Progress]:
    """The demo's progress sink; afterwards (passed or failed) its lab must be gone."""
    recorder = Progress()
    yield recorder
    assert recorder.prefixes, "the data plane never started"
    for prefix in recorder.prefixes:
        assert_removed(prefix)


def reachable_pairs(final: dict) -> set[tuple[str, str]]:
    return {(src, dst) for src, row in final["reach"].items() for dst, ok in row.items() if ok}


def test_demo_netns_matches_the_design_after_every_step(
    cli: Callable[..., object],
) -> None:
    result = cli("demo", "--netns", "--nodes", "4", "--json")
    report = json.loads(result.stdout)
    isolation = report["isolation"]
    assert_removed(isolation["lab_prefix"])

    assert result.exit_code == 0, report["violations"]
    assert report["violations"] == []
    steps = 4 * (len(SPAWN.steps) + len(TERMINATE.steps))  # every step of 4 instances
    assert (isolation["steps_passed"], isolation["steps_failed"]) == (steps, 0)
    spawned, terminated = isolation["final"]["after spawn"], isolation["final"]["after terminate"]
    assert spawned["ok"] and terminated["ok"]
    # alpha = n1, n3 (10.20.0.0/24); beta = n2, n4 (10.30.0.0/24): each reaches its peer
    # and its network's DHCP server only; the service endpoint and the service network's
    # DHCP server reach each other only.
    dhcp = {row["node"]: f"dhcp-v{row['project_vlan']}" for row in report["nodes"]}
    service = {("service", f"dhcp-v{report['service_vlan']}")}
    service |= {(b, a) for a, b in service}
    to_dhcp = {(node, server) for node, server in dhcp.items()}
    to_dhcp |= {(b, a) for a, b in to_dhcp}
    peers = {("n1", "n3"), ("n3", "n1"), ("n2", "n4"), ("n4", "n2")}
    assert reachable_pairs(spawned) == peers | to_dhcp | service
    assert spawned["addresses"] == {
        "n1": ["10.20.0.2"],
        "n2": ["10.30.0.2"],
        "n3": ["10.20.0.3"],
        "n4": ["10.30.0.3"],
    }
    # Powered off after the erase: no node answers or reaches anyone.
    assert reachable_pairs(terminated) == service
    assert all(held == [] for held in terminated["addresses"].values())


def test_a_port_moved_behind_metalnets_back_is_caught(
    tmp_path: Path,
    progress: Progress,
    cli: Callable[..., object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    demo = Demo(2, tmp_path, progress, commit_latency=0.1, netns=True)
    try:
        demo.setup()
        with demo.controller():
            demo.spawn_all()
            assert demo.proof.measure("all active").ok
            alpha_node = demo.lab.nodes[0]
            assert alpha_node.name == "n1"  # n1 is alpha's, n2 beta's

            alpha_node.switch.set_port_vlan_out_of_band(alpha_node.interface, demo.vlans["beta"])
            leak = demo.proof.measure("after a console change")

            assert leak.reach["n1"]["n2"]
            forbidden = "n1 reached n2: the design forbids it"
            assert any(m.startswith(forbidden) for m in leak.mismatches)
            caught = "tor1 committed: node n1 is access VLAN"
            assert any(v.startswith(caught) for v in demo.checks.violations), demo.checks.violations
            monkeypatch.setenv("METALNET_DATABASE_URL", demo.settings.database_url)
            checked = cli("switch", "check", alpha_node.switch.name, "--json")
    finally:
        demo.close()

    assert checked.exit_code == 1
    assert json.loads(checked.stdout)["drift"] == [
        {
            "interface": alpha_node.interface,
            "desired_vlan": demo.vlans["alpha"],
            "desired_enabled": True,
            "desired": f"VLAN {demo.vlans['alpha']}",
            "actual_vlan": demo.vlans["beta"],
            "device": f"access VLAN {demo.vlans['beta']}",
            "enabled": True,
            "in_sync": False,
        }
    ]


def test_a_demo_failing_half_way_leaves_nothing_behind(progress: Progress) -> None:
    progress.fail_at = "spawning"

    with pytest.raises(RuntimeError, match="boom"):
        run_demo(nodes=2, progress=progress, commit_latency=0.1, netns=True)
    # the `progress` fixture checks that the lab's namespaces, links and files are gone


def test_refuses_to_start_without_root() -> None:
    result = subprocess.run(
        [*NOBODY, sys.executable, "-m", "metalnet", "demo", "--netns"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("error: the network-namespace lab needs root")
