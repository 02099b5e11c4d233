"""Tenants see only their own names, and no operator detail, over real HTTP.

Operator detail: BMC URLs and user names, switch addresses and user names, the worker
(host:pid) that ran a step, another project's instances and node states. Admins see it
all; the same question from a project token gets its own things only.
"""

from __future__ import annotations

from sqlalchemy import select

from metalnet.db.models import Instance, InstanceEvent, Node

SHA = "a" * 64
OPERATOR_DETAIL = ("ipmi://", "127.0.0.1", "admin", "worker-host", "ib", "deploying", "'b'")


def _fail_instance(api, name: str) -> None:
    """Record a failure the way the lifecycle engine does: the exception text names the
    BMC, and every event names the worker."""
    with api.db.session() as s:
        inst = s.scalar(select(Instance).where(Instance.name == name))
        message = "step power_on failed: ipmi://127.0.0.1:623 user admin: connection refused"
        inst.state, inst.error = "error", message
        s.add(
            InstanceEvent(
                instance=inst, step="power_on", message="started", worker="worker-host:4242"
            )
        )
        s.add(
            InstanceEvent(
                instance=inst, step="power_on", message=message, worker="worker-host:4242"
            )
        )


def test_tenant_history_and_error_carry_no_operator_detail(api) -> None:
    _fail_instance(api, "ia")
    tenant = api.call("a", "GET", "/v1/instances/ia").json()
    assert tenant["error"] == "step power_on failed"
    assert all(e["worker"] is None for e in tenant["history"])
    shown = tenant["error"] + " ".join(e["message"] for e in tenant["history"])
    assert not any(leak in shown for leak in OPERATOR_DETAIL)
    listed = api.call("a", "GET", "/v1/instances").json()
    assert [i["error"] for i in listed] == ["step power_on failed"]
    admin = api.call("admin", "GET", "/v1/instances/ia").json()
    assert "ipmi://127.0.0.1:623" in admin["error"]
    assert {e["worker"] for e in admin["history"]} >= {"worker-host:4242"}


def test_conflict_on_another_projects_node_names_nothing_of_theirs(api) -> None:
    with api.db.session() as s:
        s.scalar(select(Node).where(Node.name == "n3")).state_reason = "held by ib for b"
    for node in ("n2", "n3"):  # n2: held by project b's instance; n3: quarantined below
        if node == "n3":
            with api.db.session() as s:
                s.scalar(select(Node).where(Node.name == "n3")).state = "quarantined"
        body = {
            "name": "x",
            "network": "net",
            "node": node,
            "image_url": "http://i/x",
            "sha256": SHA,
        }
        response = api.call("a", "POST", "/v1/instances", json=body)
        assert response.status_code == 409
        message = response.json()["error"]["message"]
        assert message == f"node {node!r} is not available"
    admin = api.call(
        "admin",
        "POST",
        "/v1/instances",
        json={
            "name": "x",
            "project": "a",
            "network": "net",
            "node": "n2",
            "image_url": "http://i/x",
            "sha256": SHA,
        },
    )
    assert admin.status_code == 409 and "deploying" in admin.json()["error"]["message"]


def test_limits_are_validated(api) -> None:
    for path in ("/v1/audit", "/v1/switch-changes"):
        for bad in ("-1", "0", "1001", "x"):
            response = api.call("admin", "GET", f"{path}?limit={bad}")
            assert response.status_code == 422, (path, bad)
            assert "limit" in response.json()["error"]["message"]
        assert api.call("admin", "GET", f"{path}?limit=1000").status_code == 200


def test_cli_limits_are_validated_locally(api, cli) -> None:
    url = str(api.db.engine.url)
    for bad in ("-1", "0", "1001"):
        result = cli("--db", url, "audit", "--limit", bad)
        assert result.exit_code == 2 and f"invalid limit {bad}" in result.stderr


def test_no_docs_pages_only_the_openapi_document(api) -> None:
    assert api.call(None, "GET", "/docs").status_code == 404
    assert api.call(None, "GET", "/redoc").status_code == 404
    document = api.call(None, "GET", "/openapi.json").json()
    answer = document["paths"]["/v1/instances/{name}"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InstanceView"
    }
    assert "history" in document["components"]["schemas"]["InstanceView"]["properties"]
