"""`switch add/set --chassis-mac`: how Ironic's switch_id finds a metalnet switch."""

from __future__ import annotations

import json


def test_chassis_mac_recorded_validated_and_unique(cli, sqlite_url) -> None:
    def run(*args: str):
        return cli("--db", sqlite_url, *args)

    assert run("db", "upgrade").exit_code == 0
    add = ("switch", "add", "--driver", "fake", "--username", "u", "--password", "p")
    ok = run(*add, "tor1", "--address", "127.0.0.1:9", "--chassis-mac", "3C-FD-FE-00-00-01")
    assert ok.exit_code == 0, ok.output
    bad = run(*add, "tor2", "--address", "127.0.0.1:10", "--chassis-mac", "3c:fd:fe:zz")
    assert bad.exit_code == 2 and "'3c:fd:fe:zz'" in bad.output
    assert json.loads(run("switch", "list", "--json").stdout)[0]["name"] == "tor1"
    assert len(json.loads(run("switch", "list", "--json").stdout)) == 1  # nothing half-added
    assert run(*add, "tor2", "--address", "127.0.0.1:10").exit_code == 0
    taken = run("switch", "set", "tor2", "--chassis-mac", "3c:fd:fe:00:00:01")
    assert taken.exit_code == 2 and "already recorded" in taken.output
    assert run("switch", "set", "tor2", "--chassis-mac", "3c:fd:fe:00:00:02").exit_code == 0
    from metalnet.config import load_settings
    from metalnet.db.engine import Database
    from metalnet.db.models import Switch

    db = Database(load_settings(None, sqlite_url))
    with db.session() as s:
        macs = {sw.name: sw.chassis_mac for sw in s.query(Switch)}
    db.engine.dispose()
    assert macs == {"tor1": "3c:fd:fe:00:00:01", "tor2": "3c:fd:fe:00:00:02"}
