"""Violations the isolation model found, each as one focused test through the API and CLI.

`node clear` after a failed erase: the model's shortest run was a tenant's instance
active on a node, the node's disk pulled (the erase at delete time fails, the node is
quarantined), the disk put back with the tenant's data still on it, then `metalnet
node clear`: the node was `available` at once, offering the previous tenant's data
to the next spawn. The rule (DESIGN.md, safety invariants): a node is never given to
a new project before its disk was erased and verified.
"""

from __future__ import annotations

from metalnet.sim.lab.model import ModelLab, until


def test_node_clear_never_offers_a_disk_that_was_not_erased(lab: ModelLab) -> None:
    spec = {
        "name": "web",
        "network": "net",
        "node": "n1",
        "image_url": lab.world.lab.image_url,
        "sha256": lab.world.lab.image_sha256,
    }
    assert lab.tenant("alpha").post("/v1/instances", json=spec).status_code == 202
    until(60, "web active", lambda: ("active", "n1") in {(i[3], i[5]) for i in lab.instances()})
    disk = lab.node("n1").disk
    disk.rename(disk.with_suffix(".pulled"))
    assert lab.tenant("alpha").delete("/v1/instances/web").status_code == 202
    lab.settle()
    assert lab.node_states()["n1"] == "quarantined"
    disk.with_suffix(".pulled").rename(disk)  # back, the tenant's image still on it
    assert not lab.world.lab.disk_is_zero(lab.node("n1"))

    cleared = lab.admin("node", "clear", "n1")

    assert cleared.code == 0, cleared.output
    lab.settle()
    assert lab.unerased_offers() == []
