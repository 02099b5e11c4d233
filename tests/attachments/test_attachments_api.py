"""Port attachments over the REST API against a simulated Junos switch (real NETCONF/SSH)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from metalnet.db.models import PortAttachment, SwitchChange
from metalnet.switches import guard
from metalnet.switches.reconcile import check_switch


def test_attach_answers_once_committed_and_read_back_then_detach_parks(rig) -> None:
    r = rig.attach("ge-0/0/7", 2201)
    assert r.status_code == 200, r.text
    assert r.json()["committed"] and r.json()["read_back"]
    assert rig.switch.port_vlans()["ge-0/0/7"] == 2201
    assert rig.call("GET", "/v1/attachments").json() == [
        {"switch": "tor1", "port": "ge-0/0/7", "vlan": 2201, "owner": "neutron:p1"}
    ]
    # The same owner moves its port to another network.
    assert rig.attach("ge-0/0/7", 2202).status_code == 200
    assert rig.switch.port_vlans()["ge-0/0/7"] == 2202
    r = rig.detach("ge-0/0/7")
    assert r.status_code == 200, r.text
    parking = rig.db.settings.parking_vlan
    assert r.json()["vlan"] == parking
    assert rig.switch.port_vlans()["ge-0/0/7"] == parking
    assert rig.call("GET", "/v1/attachments").json() == []


@pytest.mark.parametrize(
    ("port", "vlan", "owner", "words"),
    [
        ("ge-0/0/7", 10, "neutron:p1", "service VLAN 10"),
        ("ge-0/0/7", 4000, "neutron:p1", "parking VLAN 4000"),
        ("ge-0/0/1", 2201, "neutron:p1", "held by metalnet instance i1"),
        ("ge-0/0/7", 150, "neutron:p1", "project VLANs 100-1999"),
    ],
)
def test_attachment_breaking_isolation_is_refused_and_changes_nothing(
    rig, port, vlan, owner, words
) -> None:
    before = rig.desired()
    r = rig.attach(port, vlan, owner=owner)
    assert r.status_code == 409, r.text
    assert words in r.json()["error"]["message"]
    assert rig.desired() == before
    with rig.db.session() as s:
        assert s.scalar(select(func.count()).select_from(PortAttachment)) == 0


def test_one_owner_per_port(rig) -> None:
    assert rig.attach("ge-0/0/7", 2201, owner="neutron:p1").status_code == 200
    r = rig.attach("ge-0/0/7", 2202, owner="neutron:p2")
    assert r.status_code == 409
    assert "attached to neutron:p1" in r.json()["error"]["message"]
    assert rig.detach("ge-0/0/7", owner="neutron:p2").status_code == 404
    assert rig.switch.port_vlans()["ge-0/0/7"] == 2201


def test_an_attached_port_carries_only_its_attachment_vlan(rig) -> None:
    """Every other entry point goes through the same guard: port-set is refused too."""
    assert rig.attach("ge-0/0/2", 2201).status_code == 200
    with pytest.raises(guard.PortRefused, match="attached to neutron:p1 carries only VLAN 2201"):
        rig.service.set_ports([("tor1", "ge-0/0/2", 10)])
    # Ending the attachment of a node's port returns it to the service VLAN, its rule.
    r = rig.detach("ge-0/0/2")
    assert r.json()["vlan"] == rig.db.settings.service_vlan
    assert rig.switch.port_vlans()["ge-0/0/2"] == rig.db.settings.service_vlan


def test_refused_commit_answers_with_the_switch_words(rig) -> None:
    rig.switch.faults.fail_next_commit("mgd: error: configuration database locked by root")
    r = rig.attach("ge-0/0/7", 2201)
    assert r.status_code == 502
    assert "configuration database locked by root" in r.json()["error"]["message"]


def test_reconcile_holds_attached_ports_to_their_vlan(rig) -> None:
    assert rig.attach("ge-0/0/7", 2201).status_code == 200
    rig.switch.set_port_vlan_out_of_band("ge-0/0/7", 2300)
    report = check_switch(rig.service, "tor1", fix=True)
    [drift] = [d for d in report.drift if d.interface == "ge-0/0/7"]
    assert (drift.expected_vlan, drift.actual_vlan, drift.fixed) == (2201, 2300, True)
    assert rig.switch.port_vlans()["ge-0/0/7"] == 2201


def test_a_burst_of_attachments_costs_about_one_commit(rig) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rig.switch.commit_latency = 0.5
    with rig.db.session() as s:
        before = s.scalar(select(func.count()).select_from(SwitchChange))
    ports = [f"ge-0/0/{i}" for i in range(10, 40)]
    with ThreadPoolExecutor(len(ports)) as pool:
        answers = list(pool.map(lambda p: rig.attach(p, 2300, owner=f"n:{p[7:]}"), ports))
    assert [a.status_code for a in answers] == [200] * len(ports)
    with rig.db.session() as s:
        commits = s.scalar(select(func.count()).select_from(SwitchChange)) - before
    print(f"burst of {len(ports)} attachments at once: {commits} commits")
    assert commits <= 3, commits
    assert all(rig.switch.port_vlans()[p] == 2300 for p in ports)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"switch": "tor1", "port": "ge-0/0/7", "vlan": 5000, "owner": "o"}, 400, "5000"),
        ({"switch": "tor1", "port": "ge-0/0/7; x", "vlan": 2201, "owner": "o"}, 400, "ge-0/0/7; x"),
        ({"switch": "nope", "port": "ge-0/0/7", "vlan": 2201, "owner": "o"}, 404, "nope"),
        ({"switch": "tor1", "port": "ge-0/0/7", "vlan": 2201, "owner": "a b"}, 422, "owner"),
    ],
)
def test_bad_input_is_one_clear_error_and_changes_nothing(rig, body, status, words) -> None:
    r = rig.call("PUT", "/v1/attachments", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]
    assert rig.call("GET", "/v1/attachments").json() == []


def test_project_tokens_may_not_attach(rig) -> None:
    body = {"switch": "tor1", "port": "ge-0/0/7", "vlan": 2201, "owner": "o"}
    assert rig.call("PUT", "/v1/attachments", token=rig.project_token, json=body).status_code == 403


def test_switch_found_by_name_or_chassis_mac(rig) -> None:
    by_mac = rig.call("GET", "/v1/attachments/switch", params={"chassis_mac": "3C-FD-FE-00-00-01"})
    assert by_mac.json()["name"] == "tor1"
    assert rig.call("GET", "/v1/attachments/switch", params={"name": "tor1"}).status_code == 200
    missing = rig.call("GET", "/v1/attachments/switch", params={"name": "tor9"})
    assert missing.status_code == 404 and "tor9" in missing.json()["error"]["message"]
    bad = rig.call("GET", "/v1/attachments/switch", params={"chassis_mac": "zz"})
    assert bad.status_code == 400 and "'zz'" in bad.json()["error"]["message"]


def test_a_node_whose_port_is_attached_is_not_given_to_an_instance(rig) -> None:
    assert rig.attach("ge-0/0/2", 2201).status_code == 200
    body = {"name": "i2", "project": "alpha", "network": "net", "node": "n2",
            "image_url": "http://i/i.img", "sha256": "a" * 64}  # fmt: skip
    r = rig.call("POST", "/v1/instances", json=body)
    assert r.status_code == 409
    assert "attached to neutron:p1" in r.json()["error"]["message"]
