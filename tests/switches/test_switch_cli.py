"""`metalnet switch ports|port-set|check|apply|log` against the Junos simulator over SSH."""

from __future__ import annotations

import json
import socket

import pytest
from ncclient import manager

from metalnet.sim.switch.device import SimSwitch

# What an operator at the switch does to make a port a trunk carrying the service VLAN
# and a stray VLAN: Junos `interface-mode trunk` with two `vlan members` (Juniper,
# "Configuring VLANs for EX Series Switches with ELS Support", trunk interfaces).
TRUNK_10_999 = """
interfaces {
    ge-0/0/1 {
        unit 0 {
            family ethernet-switching {
                interface-mode trunk;
                replace: vlan { members [ vlan10 vlan999 ]; }
            }
        }
    }
}
vlans { vlan10 { vlan-id 10; } vlan999 { vlan-id 999; } }
"""


def commit_by_hand(sw: SimSwitch, text: str) -> None:
    """Lock, load, commit, unlock over a real NETCONF session (ncclient), as a person would."""
    with manager.connect(
        host=sw.host,
        port=sw.port,
        username=sw.username,
        password=sw.password,
        device_params={"name": "junos"},
        hostkey_verify=False,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    ) as nc:
        nc.rpc("<lock-configuration/>")
        nc.load_configuration(format="text", action="replace", config=text)
        nc.commit()
        nc.rpc("<unlock-configuration/>")


@pytest.fixture
def sw():
    with SimSwitch.running("tor1", ports=8, username="netconf", password="pw") as switch:
        yield switch


@pytest.fixture
def run(cli, sqlite_url, sw):
    def invoke(*args: str, input: str | None = None):
        return cli("--db", sqlite_url, *args, input=input)

    assert invoke("db", "upgrade").exit_code == 0
    added = invoke(
        "switch",
        "add",
        "tor1",
        "--driver",
        "junos",
        "--address",
        f"{sw.host}:{sw.port}",
        "--username",
        "netconf",
        "--password",
        "pw",
    )
    assert added.exit_code == 0, added.output
    node = invoke(
        "node",
        "add",
        "n1",
        "--mac",
        "52:54:00:00:00:01",
        "--switch",
        "tor1",
        "--port",
        "ge-0/0/1",
        "--bmc",
        "ipmi://127.0.0.1:623",
    )
    assert node.exit_code == 0, node.output
    return invoke


def test_port_set_commits_and_logs(run, sw) -> None:
    result = run("switch", "port-set", "tor1", "ge-0/0/1", "--vlan", "10", "--json")
    assert result.exit_code == 0, result.output
    assert sw.port_vlans()["ge-0/0/1"] == 10
    rows = json.loads(run("switch", "ports", "tor1", "--json").stdout)
    assert rows == [
        {
            "interface": "ge-0/0/1",
            "desired_vlan": 10,
            "desired_enabled": True,
            "desired": "VLAN 10",
            "actual_vlan": 10,
            "device": "access VLAN 10",
            "enabled": True,
            "in_sync": True,
        }
    ]
    log = json.loads(run("switch", "log", "tor1", "--json").stdout)
    assert log[0]["ok"]
    assert log[0]["ports"] == [{"interface": "ge-0/0/1", "vlan": 10, "enabled": True}]


def test_check_reports_drift_made_behind_our_back(run, sw) -> None:
    assert run("switch", "port-set", "tor1", "ge-0/0/1", "--vlan", "10").exit_code == 0
    clean = run("switch", "check", "tor1", "--json")
    assert clean.exit_code == 0 and json.loads(clean.stdout)["model"]
    sw.set_port_vlan_out_of_band("ge-0/0/1", 999)
    drifted = run("switch", "check", "tor1", "--json")
    assert drifted.exit_code == 1
    assert json.loads(drifted.stdout)["drift"][0]["actual_vlan"] == 999


def test_a_trunk_carrying_the_desired_vlan_and_another_is_drift_everywhere(run, sw) -> None:
    """`switch check`, `switch ports` and `reconcile` judge a port by the same rule."""
    assert run("switch", "port-set", "tor1", "ge-0/0/1", "--vlan", "10").exit_code == 0
    commit_by_hand(sw, TRUNK_10_999)
    check = run("switch", "check", "tor1", "--json")
    assert check.exit_code == 1, check.output
    [row] = json.loads(check.stdout)["drift"]
    assert row["interface"] == "ge-0/0/1" and row["desired_vlan"] == 10
    assert "VLAN 10,999" in row["device"]
    text = run("switch", "check", "tor1")
    assert "drift: ge-0/0/1 wanted VLAN 10, device has" in text.stdout
    ports = json.loads(run("switch", "ports", "tor1", "--json").stdout)
    assert [r["in_sync"] for r in ports] == [False]
    dry = run("reconcile", "--dry-run", "--json")
    assert dry.exit_code == 1
    [drift] = json.loads(dry.stdout)[0]["drift"]
    assert drift["interface"] == "ge-0/0/1" and drift["device"] == row["device"]
    assert run("reconcile").exit_code == 0
    assert run("switch", "check", "tor1").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ge-0/0/1;", "--vlan", "120"), "not a Junos port name"),
        (("ge-0/0/1", "--vlan", "4095"), "invalid VLAN 4095"),
        (("ge-0/0/1", "--vlan", "0"), "invalid VLAN 0"),
    ],
)
def test_bad_port_set_is_refused_before_connecting(run, sw, args, message) -> None:
    sessions = sw.session_count()
    result = run("switch", "port-set", "tor1", *args)
    assert result.exit_code == 2 and message in result.stderr
    assert sw.session_count() == sessions


def test_refused_commit_one_line_nothing_applied(run, sw) -> None:
    sw.faults.fail_next_commit("commit failed: (statement constraint check failed)")
    result = run("switch", "port-set", "tor1", "ge-0/0/1", "--vlan", "10")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "tor1" in lines[0] and "constraint check failed" in lines[0]
    assert sw.port_vlans()["ge-0/0/1"] != 10
    assert sw.lock_holder() is None


def test_wrong_password_and_unreachable_switch(cli, sqlite_url, sw) -> None:
    assert cli("--db", sqlite_url, "db", "upgrade").exit_code == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    for name, address, password in (
        ("bad", f"{sw.host}:{sw.port}", "wrong"),
        ("dead", f"127.0.0.1:{dead}", "pw"),
    ):
        cli(
            "--db",
            sqlite_url,
            "switch",
            "add",
            name,
            "--driver",
            "junos",
            "--address",
            address,
            "--username",
            "netconf",
            "--password",
            password,
        )
        result = cli("--db", sqlite_url, "switch", "check", name)
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"switch {name}" in lines[0]


def test_apply_one_commit_per_switch_and_bad_port_fails_alone(run, sw, tmp_path) -> None:
    # n1's port to the service VLAN, the unbound ones parked (what the guard allows)
    changes = [{"switch": "tor1", "port": f"ge-0/0/{i}", "vlan": 4000} for i in range(6)]
    changes[1]["vlan"] = 10
    changes.append({"switch": "tor1", "port": "ge-0/0/99", "vlan": 4000})  # not on this switch
    path = tmp_path / "changes.json"
    path.write_text(json.dumps(changes))
    before = sw.commit_count()
    result = run("switch", "apply", str(path), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    oks = {c["port"]: c["ok"] for c in report["changes"]}
    assert oks.pop("ge-0/0/99") is False and all(oks.values())
    assert all(sw.port_vlans()[f"ge-0/0/{i}"] == c["vlan"] for i, c in enumerate(changes[:6]))
    # the batch is refused naming ge-0/0/99; the rest goes in one more transaction, which
    # Junos records as two commits (commit confirmed, then the confirming commit)
    assert sw.commit_count() - before == 2
    assert report["commits"] == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"switch": "tor1"}', "expected a JSON list"),
        ('[{"switch": "tor1", "port": "ge-0/0/1"}]', "entry 0"),
        ('[{"switch": "tor1", "port": "ge-0/0/1", "vlan": "12"}]', "not an integer"),
        ('[{"switch": "ghost", "port": "ge-0/0/1", "vlan": 12}]', "unknown switch 'ghost'"),
    ],
)
def test_apply_bad_file_changes_nothing(run, sw, tmp_path, content, message) -> None:
    path = tmp_path / "changes.json"
    path.write_text(content)
    before = sw.commit_count()
    result = run("switch", "apply", str(path))
    assert result.exit_code == 2 and message in result.stderr
    assert sw.commit_count() == before


def test_apply_from_stdin(run, sw) -> None:
    result = run("switch", "apply", "-", input='[{"switch":"tor1","port":"ge-0/0/2","vlan":4000}]')
    assert result.exit_code == 0, result.output
    assert sw.port_vlans()["ge-0/0/2"] == 4000
