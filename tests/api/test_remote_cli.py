"""The CLI against a running server (`--url`, METALNET_TOKEN): same output as locally."""

from __future__ import annotations

import json

import pytest

from metalnet.db.models import SwitchChange


@pytest.fixture
def remote(api, cli, monkeypatch):
    """Run the CLI against the test server with the given role's token."""

    def run(role: str | None, *args: str):
        if role is None:
            monkeypatch.delenv("METALNET_TOKEN", raising=False)
        else:
            monkeypatch.setenv("METALNET_TOKEN", api.tokens[role])
        return cli("--url", api.url, *args)

    return run


@pytest.fixture
def local(api, cli):
    """Run the CLI on the server's database directly."""
    return lambda *args: cli("--db", str(api.db.engine.url), *args)


@pytest.mark.parametrize(
    "args",
    [
        ("project", "list", "--json"),
        ("project", "show", "a", "--json"),
        ("network", "list", "--json"),
        ("network", "show", "net", "-p", "b", "--json"),
        ("switch", "list", "--json"),
        ("switch", "show", "sw", "--json"),
        ("node", "list", "--json"),
        ("node", "show", "n2", "--json"),
        ("instance", "list", "--json"),
        ("instance", "show", "ia", "--json"),
        ("instance", "list"),
        ("node", "list"),
    ],
)
def test_admin_sees_the_same_output_remotely(remote, local, args) -> None:
    here, there = local(*args), remote("admin", *args)
    assert here.exit_code == there.exit_code == 0, there.output
    assert here.stdout == there.stdout


def test_changes_go_through_the_api_and_are_audited_there(remote, local) -> None:
    made = remote("admin", "project", "create", "c")
    assert made.exit_code == 0 and made.stdout == "project c created\n"
    assert "c" in local("project", "show", "c", "--json").stdout
    audit = remote("admin", "audit", "--json").stdout
    assert '"actor": "api:token-1:t-admin"' in audit and '"action": "project create"' in audit


def test_tenant_token_errors_in_one_line(remote) -> None:
    hidden = remote("a", "instance", "show", "ib")
    assert hidden.exit_code == 2 and hidden.stderr == "error: unknown instance 'ib'\n"
    refused = remote("a", "project", "create", "c")
    assert refused.exit_code == 2 and "admin token" in refused.stderr
    bad = remote(
        "a", "network", "create", "x", "-p", "a", "--cidr", "10.5.0.0/24", "--vlan", "5000"
    )
    assert bad.exit_code == 2 and "invalid VLAN 5000" in bad.stderr


def test_local_only_commands_and_missing_token_are_one_line(remote) -> None:
    local_only = remote("admin", "reconcile")
    assert local_only.exit_code == 2
    assert (
        local_only.stderr
        == "error: `metalnet reconcile` works on the local database only, not --url\n"
    )
    no_token = remote(None, "project", "list")
    assert no_token.exit_code == 2 and "METALNET_TOKEN" in no_token.stderr


def test_switch_log_filters_by_switch_before_limiting(api, remote, local) -> None:
    """The newest N commits of one switch, however many other switches committed since."""
    with api.db.session() as s:
        for i in range(6):
            s.add(
                SwitchChange(
                    switch_name="sw" if i < 3 else "other",
                    ports=[{"interface": f"eth{i}", "vlan": 100}],
                    ok=True,
                    seconds=0.1,
                    message="",
                )
            )
    args = ("switch", "log", "sw", "--limit", "2", "--json")
    here, there = local(*args), remote("admin", *args)
    assert here.exit_code == there.exit_code == 0, there.output
    assert here.stdout == there.stdout
    rows = json.loads(there.stdout)
    assert [r["switch"] for r in rows] == ["sw", "sw"]
    assert [r["ports"][0]["interface"] for r in rows] == ["eth2", "eth1"]


def test_tokens_are_managed_remotely_with_the_same_output(remote, local) -> None:
    made = remote("admin", "token", "create", "ci", "--project", "a", "--json")
    assert made.exit_code == 0 and json.loads(made.stdout)["token"].startswith("mnt_")
    listed = ("token", "list", "--json")
    assert remote("admin", *listed).stdout == local(*listed).stdout
    assert remote("a", *listed).exit_code == 2
