"""Sign-in by cookie, CSRF, the page's headers, and /v1/fabric's scope, over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from uilab import wait_for

from metalnet import inventory
from metalnet.api.auth import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from metalnet.db.models import AuditEntry

STATIC = Path(__file__).resolve().parents[2] / "src" / "metalnet" / "ui" / "static"


@contextmanager
def session(ui_lab, role: str = "admin") -> Iterator[httpx.Client]:
    """A client signed in the way the page does it: it holds only the cookies."""
    with httpx.Client(base_url=ui_lab.url, timeout=30) as client:
        reply = client.post("/ui/session", json={"token": ui_lab.tokens[role]})
        assert reply.status_code == 200, reply.text
        yield client


def test_sign_in_sets_an_httponly_strict_cookie_and_a_readable_csrf_cookie(ui_lab) -> None:
    reply = httpx.post(ui_lab.url + "/ui/session", json={"token": ui_lab.tokens["alpha"]})
    assert reply.json() == {"name": "ui-alpha", "project": "alpha"}
    cookies = {c.split("=", 1)[0]: c.lower() for c in reply.headers.get_list("set-cookie")}
    assert "httponly" in cookies[SESSION_COOKIE] and "samesite=strict" in cookies[SESSION_COOKIE]
    assert "httponly" not in cookies[CSRF_COOKIE] and "samesite=strict" in cookies[CSRF_COOKIE]


def test_the_cookie_authenticates_reads_with_the_tokens_scope(ui_lab) -> None:
    with session(ui_lab, "alpha") as client:
        assert client.get("/ui/session").json()["project"] == "alpha"
        assert client.get("/v1/projects").json()[0]["name"] == "alpha"
        assert client.get("/v1/nodes").status_code == 403  # exactly as the bearer token


def test_a_cookie_authenticated_change_needs_the_csrf_header(ui_lab) -> None:
    with session(ui_lab) as client:
        refused = client.post("/v1/projects", json={"name": "csrf-victim"})
        assert refused.status_code == 403
        assert CSRF_HEADER in refused.json()["error"]["message"]
        wrong = client.post(
            "/v1/projects", json={"name": "csrf-victim"}, headers={CSRF_HEADER: "x"}
        )
        assert wrong.status_code == 403
        assert ui_lab.call("admin", "GET", "/v1/projects/csrf-victim").status_code == 404
        header = {CSRF_HEADER: client.cookies[CSRF_COOKIE]}
        assert client.post("/v1/projects", json={"name": "csrf-ok"}, headers=header).is_success
        assert client.delete("/v1/projects/csrf-ok", headers=header).status_code == 204


def test_a_cross_site_form_post_with_the_cookie_is_refused(ui_lab) -> None:
    """What a browser without SameSite would send from another site's form."""
    with session(ui_lab) as client:
        reply = client.post(
            "/v1/projects",
            content='{"name": "forged", "x": "="}',
            headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
        )
    assert reply.status_code == 403
    assert ui_lab.call("admin", "GET", "/v1/projects/forged").status_code == 404


def test_a_bearer_token_needs_no_csrf_header(ui_lab) -> None:
    assert ui_lab.call("admin", "POST", "/v1/projects", json={"name": "bearer-ok"}).is_success
    assert ui_lab.call("admin", "DELETE", "/v1/projects/bearer-ok").status_code == 204


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        ({"token": "mnt_not-a-token"}, {}, 401, "unknown or revoked token"),
        ({"token": ""}, {}, 422, "token"),
        ({"token": "x", "extra": 1}, {}, 422, "extra"),
        (None, {"Origin": "http://evil.example"}, 403, "evil.example"),
    ],
)
def test_bad_sign_ins_are_refused_with_one_clear_line(ui_lab, body, headers, status, words):
    body = body or {"token": ui_lab.tokens["admin"]}
    reply = httpx.post(ui_lab.url + "/ui/session", json=body, headers=headers)
    assert reply.status_code == status
    assert words in reply.json()["error"]["message"]
    assert SESSION_COOKIE not in reply.cookies


def test_sign_out_forgets_the_session(ui_lab) -> None:
    with session(ui_lab) as client:
        assert client.delete("/ui/session").status_code == 204
        assert SESSION_COOKIE not in client.cookies
        assert client.get("/ui/session").status_code == 401


def test_a_revoked_token_ends_its_session_at_once(ui_lab) -> None:
    from metalnet import apitokens

    with ui_lab.db.session() as s:
        row, secret = apitokens.create(s, "ui-short-lived", "beta")
        s.flush()
        token_id = row.id
    with httpx.Client(base_url=ui_lab.url) as client:
        assert client.post("/ui/session", json={"token": secret}).status_code == 200
        assert client.get("/v1/fabric").status_code == 200
        with ui_lab.db.session() as s:
            apitokens.revoke(s, token_id)
        assert client.get("/v1/fabric").status_code == 401


def test_the_page_is_served_with_a_strict_content_security_policy(ui_lab) -> None:
    page = httpx.get(ui_lab.url + "/ui/")
    assert page.status_code == 200 and "<title>metalnet</title>" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    script = httpx.get(ui_lab.url + "/ui/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]


def test_the_page_never_parses_text_as_html() -> None:
    """The one way in for markup is an HTML sink; the page's code uses none."""
    code = (STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code


def _fabric_ports(reply: httpx.Response) -> dict[tuple[str, str], dict]:
    assert reply.status_code == 200, reply.text
    return {(s["name"], p["interface"]): p for s in reply.json()["switches"] for p in s["ports"]}


def test_fabric_admin_sees_every_port_a_project_only_its_nodes(ui_lab) -> None:
    admin = _fabric_ports(ui_lab.call("admin", "GET", "/v1/fabric"))
    device = {(sw.name, port) for sw in ui_lab.lab.fleet.switches for port in sw.port_vlans()}
    assert set(admin) == device
    n1 = next(n for n in ui_lab.lab.nodes if n.name == "n1")
    assert admin[(n1.switch.name, n1.interface)]["in"] == {"kind": "service"}
    assert _fabric_ports(ui_lab.call("beta", "GET", "/v1/fabric")) == {}


def test_fabric_and_dry_run_show_a_port_changed_behind_our_back(ui_lab) -> None:
    node = next(n for n in ui_lab.lab.nodes if n.name == "n3")
    where = (node.switch.name, node.interface)
    node.switch.set_port_vlan_out_of_band(node.interface, 77)
    try:
        port = wait_for(
            lambda: (
                (p := _fabric_ports(ui_lab.call("admin", "GET", "/v1/fabric"))[where])
                and p["in_sync"] is False
                and p
            ),
            what="drift on n3's port",
        )
        assert port["desired_vlan"] == ui_lab.db.settings.service_vlan
        assert port["actual"]["vlans"] == [77] and port["in"] == {"kind": "unknown"}
        reports = ui_lab.call("admin", "POST", "/v1/reconcile/dry-run").json()
        drift = [d for r in reports for d in r["drift"]]
        assert [(d["interface"], d["expected_vlan"], d["actual_vlan"]) for d in drift] == [
            (node.interface, ui_lab.db.settings.service_vlan, 77)
        ]
        assert node.port_vlan() == 77  # a dry run fixes nothing
    finally:
        node.switch.set_port_vlan_out_of_band(node.interface, ui_lab.db.settings.service_vlan)


def test_reconcile_dry_run_is_for_admins_and_audited(ui_lab) -> None:
    assert ui_lab.call("alpha", "POST", "/v1/reconcile/dry-run").status_code == 403
    reply = ui_lab.call("admin", "POST", "/v1/reconcile/dry-run")
    assert reply.status_code == 200
    assert {r["switch"] for r in reply.json()} == {"tor1", "tor2"}
    with ui_lab.db.session() as s:
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert (entry.action, entry.target, entry.ok) == ("reconcile", "dry run", True)


def test_switch_queue_depth_is_for_admins(ui_lab) -> None:
    assert ui_lab.call("beta", "GET", "/v1/switch-queue").status_code == 403
    assert ui_lab.call("admin", "GET", "/v1/switch-queue").json() == {"depth": 0.0}


def test_a_switch_that_cannot_be_read_shows_its_error_and_the_wanted_state(ui_lab) -> None:
    with socket.socket() as s:  # a port nobody listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    with ui_lab.db.session() as s:
        inventory.add_switch(s, "dead", "junos", dead, "u", "p")
        inventory.add_node(
            s, ui_lab.db.settings, "n9", "52:54:00:00:09:09", "dead", "ge-0/0/3",
            "redfish://127.0.0.1:9", "admin", "x",
        )  # fmt: skip
    try:
        fabric = ui_lab.call("admin", "GET", "/v1/fabric").json()
        switch = next(s for s in fabric["switches"] if s["name"] == "dead")
        assert "dead" in switch["error"]
        [port] = switch["ports"]
        assert (port["interface"], port["node"], port["in_sync"]) == ("ge-0/0/3", "n9", None)
        assert port["actual"] is None and port["in"] == {"kind": "service"}
    finally:
        with ui_lab.db.session() as s:
            inventory.delete_node(s, ui_lab.db.settings, "n9")
        with ui_lab.db.session() as s:
            inventory.delete_switch(s, "dead")
