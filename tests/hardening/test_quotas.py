"""Per-project quotas: enforced where networks and instances are created, race-safe,
refused with exit 2 / HTTP 409 naming the quota."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from sqlalchemy.exc import OperationalError

from metalnet import inventory, quotas
from metalnet.config import Settings
from metalnet.db.engine import Database
from metalnet.errors import Conflict
from metalnet.lifecycle import instances

SHA = "a" * 64


def test_network_quota_through_the_cli(run) -> None:
    assert run("project", "create", "acme").exit_code == 0
    set_ = run("project", "quota", "acme", "--networks", "2")
    assert set_.exit_code == 0 and "2 networks (project)" in set_.stdout
    for i in (1, 2):
        made = run("network", "create", f"n{i}", "-p", "acme", "--cidr", f"10.{i}.0.0/24")
        assert made.exit_code == 0, made.output
    refused = run("network", "create", "n3", "-p", "acme", "--cidr", "10.3.0.0/24")
    assert refused.exit_code == 2
    assert "project 'acme' has reached its quota of 2 networks (quota_networks" in refused.stderr
    assert "n3" not in run("network", "list", "-p", "acme").stdout
    audit = run("audit", "--json").stdout
    assert '"action": "project quota"' in audit and "networks=2" in audit


def test_instance_quota_through_the_cli(cli, sqlite_url, tmp_path) -> None:
    config = tmp_path / "metalnet.toml"
    config.write_text('image_server = "http://img/"\n')

    def run(*args: str):
        return cli("--config", str(config), "--db", sqlite_url, *args)

    assert run("db", "upgrade").exit_code == 0
    steps = [
        ("switch", "add", "sw", "--driver", "fake", "--address", "127.0.0.1:830",
         "--username", "u", "--password", "p"),
        ("project", "create", "acme"),
        ("network", "create", "net", "-p", "acme", "--cidr", "10.1.0.0/24"),
        ("project", "quota", "acme", "--instances", "1"),
    ]  # fmt: skip
    for i in (1, 2):
        node = ("node", "add", f"n{i}", "--mac", f"52:54:00:00:00:0{i}", "--switch", "sw")
        steps.append((*node, "--port", f"eth{i}", "--bmc", f"ipmi://h:{700 + i}",
                      "--skip-initial-erase"))  # fmt: skip
    for step in steps:
        done = run(*step)
        assert done.exit_code == 0, (step, done.output)
    spawn = ("-p", "acme", "--network", "net", "--image", "http://img/x", "--sha256", SHA, "--any")
    assert run("instance", "create", "i1", *spawn).exit_code == 0
    refused = run("instance", "create", "i2", *spawn)
    assert refused.exit_code == 2
    assert "reached its quota of 1 instances (quota_instances" in refused.stderr


def test_bad_quota_is_refused(run) -> None:
    assert run("project", "create", "acme").exit_code == 0
    bad = run("project", "quota", "acme", "--networks", "-1")
    assert bad.exit_code == 2 and "invalid networks quota -1" in bad.stderr


def test_configured_default_applies_without_a_project_quota(db) -> None:
    config = Settings(database_url=db.settings.database_url, quota_networks=1)
    with db.session() as s:
        inventory.create_project(s, "acme")
        inventory.create_network(s, config, "acme", "a", "10.1.0.0/24")
    with pytest.raises(quotas.QuotaExceeded, match="quota of 1 networks"), db.session() as s:
        inventory.create_network(s, config, "acme", "b", "10.2.0.0/24")


def _race(db: Database, attempts: int, create) -> tuple[int, int]:
    """`attempts` threads create at once; returns (created, refused by the quota)."""
    barrier = threading.Barrier(attempts)
    created, refused, other = [], [], []

    def one(i: int) -> None:
        barrier.wait()
        for _try in range(50):  # SQLite busy / PostgreSQL deadlock victim: try again
            try:
                with db.session() as s:
                    create(s, i)
                created.append(i)
                return
            except quotas.QuotaExceeded:
                refused.append(i)
                return
            except (OperationalError, Conflict) as exc:
                other.append(exc)
        raise AssertionError(f"thread {i} never finished: {other[-1]}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a create hung"
    return len(created), len(refused)


def test_concurrent_network_creates_never_exceed_the_quota(db) -> None:
    with db.session() as s:
        quotas.set_quota(s, inventory.create_project(s, "acme"), 3, None)

    def create(s, i: int) -> None:
        inventory.create_network(s, db.settings, "acme", f"n{i}", f"10.{i}.0.0/24")

    assert _race(db, 8, create) == (3, 5)


def test_concurrent_spawns_never_exceed_the_quota(db) -> None:
    with db.session() as s:
        quotas.set_quota(s, inventory.create_project(s, "acme"), None, 2)
        inventory.create_network(s, db.settings, "acme", "net", "10.1.0.0/24")
        inventory.add_switch(s, "sw", "fake", "127.0.0.1:830", "u", "p")
        for i in range(6):
            mac = f"52:54:00:00:00:1{i}"
            inventory.add_node(
                s,
                db.settings,
                f"n{i}",
                mac,
                "sw",
                f"eth{i}",
                f"ipmi://h:{700 + i}",
                initial_erase=False,
            )

    config = dataclasses.replace(db.settings, image_allow=("img",))

    def create(s, i: int) -> None:
        instances.create_instance(
            s, f"i{i}", "acme", "net", f"n{i}", "http://img/x", SHA, settings=config
        )

    assert _race(db, 6, create) == (2, 4)


def test_api_refuses_over_quota_with_409(https_server) -> None:
    server = https_server
    assert server.run("project", "quota", "acme", "--networks", "1").exit_code == 0
    with server.client() as client:
        first = {"name": "first", "cidr": "10.8.0.0/24"}
        assert client.post("/v1/projects/acme/networks", json=first).status_code == 201
        extra = {"name": "extra", "cidr": "10.9.0.0/24"}
        r = client.post("/v1/projects/acme/networks", json=extra)
    assert r.status_code == 409
    assert "quota of 1 networks" in r.json()["error"]["message"]
