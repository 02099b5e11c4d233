"""Every endpoint against every role over real HTTP: allowed exactly what it should be."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from metalnet.db.models import AuditEntry

SHA = "a" * 64
NEW_NET = {"name": "n2", "cidr": "10.9.0.0/24"}
NEW_INSTANCE = {
    "name": "x",
    "network": "net",
    "node": "n3",
    "image_url": "http://i/x",
    "sha256": SHA,
}
NEW_NODE = {
    "name": "n9",
    "mac": "52:54:00:00:00:99",
    "switch": "sw",
    "port": "eth9",
    "bmc_url": "ipmi://127.0.0.1:623",
}
NEW_SWITCH = {
    "name": "sw2",
    "driver": "fake",
    "address": "127.0.0.1:831",
    "username": "u",
    "password": "p",
}

# (method, path, json body, status for admin, for project a's token); b's token is never used
# on a's things here: project b's resources are addressed from a's token to prove isolation.
CASES = [
    ("GET", "/v1/projects", None, 200, 200),
    ("POST", "/v1/projects", {"name": "c"}, 201, 403),
    ("GET", "/v1/projects/a", None, 200, 200),
    ("GET", "/v1/projects/b", None, 200, 404),
    ("DELETE", "/v1/projects/b", None, 409, 403),
    ("GET", "/v1/projects/a/networks", None, 200, 200),
    ("GET", "/v1/projects/b/networks", None, 200, 404),
    ("POST", "/v1/projects/a/networks", NEW_NET, 201, 201),
    ("POST", "/v1/projects/b/networks", NEW_NET, 201, 404),
    ("GET", "/v1/projects/b/networks/net", None, 200, 404),
    ("DELETE", "/v1/projects/b/networks/net", None, 409, 404),
    ("GET", "/v1/switches", None, 200, 403),
    ("POST", "/v1/switches", NEW_SWITCH, 201, 403),
    ("GET", "/v1/switches/sw", None, 200, 403),
    ("DELETE", "/v1/switches/sw", None, 409, 403),
    ("GET", "/v1/switch-changes", None, 200, 403),
    ("GET", "/v1/nodes", None, 200, 403),
    ("POST", "/v1/nodes", NEW_NODE, 201, 403),
    ("GET", "/v1/nodes/n1", None, 200, 403),
    ("DELETE", "/v1/nodes/n1", None, 409, 403),
    ("POST", "/v1/nodes/n3/clear", None, 409, 403),
    ("GET", "/v1/instances", None, 200, 200),
    ("GET", "/v1/instances/ia", None, 200, 200),
    ("GET", "/v1/instances/ib", None, 200, 404),
    ("DELETE", "/v1/instances/ib", None, 202, 404),
    ("DELETE", "/v1/instances/ia", None, 202, 202),
    ("POST", "/v1/instances", {**NEW_INSTANCE, "project": "a"}, 202, 202),
    ("POST", "/v1/instances", {**NEW_INSTANCE, "project": "b"}, 202, 404),
    ("GET", "/v1/audit", None, 200, 403),
    ("GET", "/v1/networks", None, 200, 200),
    ("GET", "/v1/networks?project=b", None, 200, 404),
    ("GET", "/v1/tokens", None, 200, 403),
    ("POST", "/v1/tokens", {"name": "new", "project": "a"}, 201, 403),
    ("DELETE", "/v1/tokens/3", None, 200, 403),
]


@pytest.mark.parametrize("role", ["admin", "a"])
@pytest.mark.parametrize(
    ("method", "path", "body", "admin", "tenant"),
    CASES,
    ids=[f"{m} {p} {i}" for i, (m, p, *_rest) in enumerate(CASES)],
)
def test_role_matrix(api, role, method, path, body, admin, tenant) -> None:
    """Each role on a fresh server, so one role's change cannot hide another's refusal."""
    assert api.call(None, method, path, json=body).status_code == 401
    response = api.call(role, method, path, json=body)
    assert response.status_code == (admin if role == "admin" else tenant), response.text


def test_tenant_lists_only_its_own(api) -> None:
    names = {i["name"] for i in api.call("a", "GET", "/v1/instances").json()}
    assert names == {"ia"}
    assert [p["name"] for p in api.call("b", "GET", "/v1/projects").json()] == ["b"]
    everything = api.call("admin", "GET", "/v1/instances").json()
    assert {i["name"] for i in everything} == {"ia", "ib"}


def test_secrets_never_in_responses(api) -> None:
    bodies = "".join(
        api.call("admin", "GET", p).text
        for p in ("/v1/switches", "/v1/switches/sw", "/v1/nodes", "/v1/nodes/n1")
    )
    assert "switch-secret" not in bodies and "bmc-secret" not in bodies


def test_revoked_token_stops_at_once(api, cli) -> None:
    assert api.call("a", "GET", "/v1/projects").status_code == 200
    url = str(api.db.engine.url)
    result = cli("--db", url, "token", "revoke", str(api.token_ids["a"]))
    assert result.exit_code == 0, result.output
    denied = api.call("a", "GET", "/v1/projects")
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "unauthorized"


def test_changes_are_audited_with_the_caller(api) -> None:
    assert api.call("a", "POST", "/v1/projects/a/networks", json=NEW_NET).status_code == 201
    again = {**NEW_NET, "cidr": "10.10.0.0/24"}
    assert api.call("a", "POST", "/v1/projects/a/networks", json=again).status_code == 409
    entries = api.call("admin", "GET", "/v1/audit").json()
    mine = [e for e in entries if e["action"] == "network create"]
    assert [e["ok"] for e in mine] == [False, True]  # newest first
    assert all(e["actor"].endswith(":t-a") for e in mine)
    with api.db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 2


def test_metrics_need_an_admin_token(api) -> None:
    assert api.call(None, "GET", "/metrics").status_code == 401
    assert api.call("a", "GET", "/metrics").status_code == 403
    response = api.call("admin", "GET", "/metrics")
    assert response.status_code == 200
    assert "metalnet_switch_queue_depth" in response.text
    assert response.headers["content-type"].startswith("text/plain")


def test_openapi_schema_lists_the_api(api) -> None:
    paths = api.call(None, "GET", "/openapi.json").json()["paths"]
    assert {"/v1/instances", "/v1/projects/{project}/networks", "/v1/nodes"} <= set(paths)
