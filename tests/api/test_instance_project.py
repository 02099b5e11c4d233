"""`instance show/delete --project`: how an admin names one of two live instances of one
name, through the one service layer, so the local and the remote CLI answer alike."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from metalnet.db.models import Instance
from metalnet.lifecycle import instances

SHA = "a" * 64


@pytest.fixture
def run(api, cli, monkeypatch, request):
    """The CLI on the server's database (local) or over its API with a role's token
    (remote), after a second live instance "ia" was spawned in project b."""
    with api.db.session() as s:
        instances.create_instance(
            s, "ia", "b", "net", "n3", "http://img/b", SHA, settings=api.db.settings
        )

    def local(*args: str):
        return cli("--db", str(api.db.engine.url), *args)

    def remote(role: str, *args: str):
        monkeypatch.setenv("METALNET_TOKEN", api.tokens[role])
        return cli("--url", api.url, *args)

    return local, remote


@pytest.mark.parametrize("where", ["local", "remote"])
def test_admin_names_the_project_of_a_shared_name(run, where) -> None:
    local, remote = run
    call = local if where == "local" else lambda *a: remote("admin", *a)
    ambiguous = call("instance", "show", "ia")
    assert ambiguous.exit_code == 2
    assert ambiguous.stderr == (
        "error: instance name 'ia' is used in several projects; name the project\n"
    )
    for project, node in (("a", "n1"), ("b", "n3")):
        shown = call("instance", "show", "ia", "--project", project, "--json")
        assert shown.exit_code == 0, shown.output
        view = json.loads(shown.stdout)
        assert (view["project"], view["node"]) == (project, node)
    deleted = call("instance", "delete", "ia", "-p", "b", "--json")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout)["state"] == "deleting"
    # Only b's was terminated: a's is untouched.
    kept = json.loads(call("instance", "show", "ia", "-p", "a", "--json").stdout)
    assert kept["state"] == "building"


@pytest.mark.parametrize("where", ["local", "remote"])
@pytest.mark.parametrize("command", ["show", "delete"])
def test_unknown_project_is_one_line_and_changes_nothing(api, run, where, command) -> None:
    local, remote = run
    call = local if where == "local" else lambda *a: remote("admin", *a)
    result = call("instance", command, "ia", "--project", "nope")
    assert result.exit_code == 2
    assert result.stderr == "error: unknown project 'nope'\n"
    assert result.stdout == ""
    with api.db.session() as s:
        states = s.scalars(select(Instance.state).where(Instance.name == "ia")).all()
    assert sorted(states) == ["building", "building"]


def test_tenant_cannot_reach_into_another_project(run) -> None:
    _, remote = run
    other = remote("a", "instance", "show", "ia", "--project", "b")
    assert other.exit_code == 2 and other.stderr == "error: unknown project 'b'\n"
    own = remote("a", "instance", "show", "ia", "--project", "a", "--json")
    assert own.exit_code == 0 and json.loads(own.stdout)["project"] == "a"
