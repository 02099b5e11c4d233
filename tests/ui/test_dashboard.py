"""The dashboard in a real browser (headless Chromium) against a running lab."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from sqlalchemy import select
from uilab import wait_for

from metalnet.db.models import AuditEntry, Instance, Network, Node, Project
from metalnet.lifecycle.instances import get_instance

DOCS = Path(__file__).resolve().parents[2] / "docs"
HOSTILE = '<img src=x onerror="document.title=location.host">'


def sign_in(browser, ui_lab, role: str) -> None:
    browser.delete_all_cookies()
    browser.get(ui_lab.url + "/ui/")
    wait_for(lambda: browser.find_element(By.ID, "token").is_displayed(), what="sign-in form")
    browser.find_element(By.ID, "token").send_keys(ui_lab.tokens[role])
    browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    wait_for(lambda: browser.find_element(By.ID, "tabs").is_displayed(), what="signed in")


def ports(browser) -> dict[tuple[str, str], dict[str, str]]:
    """Every port box on the fabric view: (switch, interface) -> its data and label.

    Read in one script, so the page's next redraw cannot change it halfway."""
    boxes = browser.execute_script(
        "return [...document.querySelectorAll('#switches .port')].map(b => "
        "({...b.dataset, label: b.textContent}))"
    )
    return {(b["switch"], b["interface"]): b for b in boxes}


def spawn_active(ui_lab, role: str, name: str, node: str) -> None:
    """Spawn through the API unless done already, and wait until the instance is active."""
    if ui_lab.call(role, "GET", f"/v1/instances/{name}").status_code == 404:
        body = {
            "name": name,
            "network": "net",
            "node": node,
            "image_url": ui_lab.lab.image_url,
            "sha256": ui_lab.lab.image_sha256,
        }
        assert ui_lab.call(
            "admin", "POST", "/v1/instances", json={**body, "project": role}
        ).is_success

    def active() -> bool:
        state = ui_lab.call(role, "GET", f"/v1/instances/{name}").json()["state"]
        assert state != "error", f"{name} failed"
        return state == "active"

    wait_for(active, timeout=90, what=f"{name} active")


def port_of(ui_lab, node: str) -> tuple[str, str]:
    lab_node = next(n for n in ui_lab.lab.nodes if n.name == node)
    return lab_node.switch.name, lab_node.interface


def test_admin_sees_every_port_of_every_switch(browser, ui_lab) -> None:
    sign_in(browser, ui_lab, "admin")
    expected = {(sw.name, port) for sw in ui_lab.lab.fleet.switches for port in sw.port_vlans()}
    assert len(expected) == 16
    wait_for(lambda: set(ports(browser)) == expected, what="all 16 ports")
    shown = ports(browser)
    for node in ui_lab.lab.nodes:  # reconciled at start: every node waits in the service VLAN
        assert shown[(node.switch.name, node.interface)]["kind"] == "service"
        assert shown[(node.switch.name, node.interface)]["label"].endswith("svc")
    legend = browser.find_element(By.ID, "legend").text
    for words in ("service VLAN", "parking", "unknown", "drift"):
        assert words in legend


def test_a_new_instance_changes_its_port_colour_live(browser, ui_lab, artefacts) -> None:
    sign_in(browser, ui_lab, "admin")
    where = port_of(ui_lab, "n1")
    wait_for(lambda: ports(browser).get(where, {}).get("kind") == "service", what="n1 in service")
    polls = int(browser.find_element(By.ID, "live").get_attribute("data-polls"))
    spawn_active(ui_lab, "alpha", "web", "n1")  # through the API, not the page
    # a move in flight may show as drift for a poll; it settles in the project's colour
    port = wait_for(
        lambda: (p := ports(browser)[where])["kind"] == "project" and p["drift"] == "false" and p,
        what="n1's port in project alpha, in sync",
    )
    assert port["project"] == "alpha"
    assert "alpha" in port["label"]
    assert int(browser.find_element(By.ID, "live").get_attribute("data-polls")) > polls
    switch, interface = where
    box = browser.find_element(
        By.CSS_SELECTOR, f'.port[data-switch="{switch}"][data-interface="{interface}"]'
    )
    box.click()
    detail = wait_for(
        lambda: browser.find_element(By.ID, "port-detail").text or None, what="port detail"
    )
    assert "n1" in detail and f"VLAN {ui_lab.vlans['alpha']}" in detail
    browser.save_screenshot(str(artefacts / "fabric.png"))

    browser.find_element(By.CSS_SELECTOR, '.tab[data-view="nodes"]').click()
    link = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, '#instances tr[data-instance="web"] a'),
        what="instance row",
    )
    link.click()
    rows = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, '.timeline[data-instance="web"] .row'),
        what="timeline",
    )
    with ui_lab.db.session() as s:
        done = [e.step for e in get_instance(s, "web").events if e.message == "done"]
    statuses = {r.get_attribute("data-step"): r.get_attribute("data-status") for r in rows}
    assert done and all(statuses[step] == "done" for step in done)
    browser.save_screenshot(str(artefacts / "timeline.png"))


def test_a_project_sees_only_its_own_ports(browser, ui_lab) -> None:
    spawn_active(ui_lab, "alpha", "web", "n1")
    spawn_active(ui_lab, "beta", "db", "n2")
    for project, node in (("alpha", "n1"), ("beta", "n2")):
        sign_in(browser, ui_lab, project)
        wait_for(lambda: ports(browser), what=f"{project}'s ports")
        shown = ports(browser)
        assert set(shown) == {port_of(ui_lab, node)}
        assert [p["project"] for p in shown.values()] == [project]
        other = "beta" if project == "alpha" else "alpha"
        assert other not in browser.find_element(By.TAG_NAME, "body").text
        assert not browser.find_element(By.ID, "nodes").is_displayed()


def test_a_failed_step_shows_in_red_on_the_timeline(browser, ui_lab, artefacts) -> None:
    body = {
        "name": "broken",
        "project": "beta",
        "network": "net",
        "node": "n4",
        "image_url": ui_lab.lab.image_url,
        "sha256": "0" * 64,  # the agent's checksum check fails the deploy
    }
    assert ui_lab.call("admin", "POST", "/v1/instances", json=body).is_success
    sign_in(browser, ui_lab, "beta")
    browser.find_element(By.CSS_SELECTOR, '.tab[data-view="nodes"]').click()
    wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, '#instances tr[data-instance="broken"] a'),
        what="instance row",
    ).click()
    failed = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, '.timeline .row[data-status="failed"]'),
        timeout=90,
        what="a failed step",
    )
    assert "failed" in failed[0].text
    browser.save_screenshot(str(artefacts / "timeline-failed.png"))


def test_a_disabled_port_is_striped_and_says_so(browser, ui_lab) -> None:
    """A port wanted disabled (its node's BMC did not power it off; how the lifecycle
    gets there is tests/lifecycle/test_disabled_port.py) is drawn striped, and its title
    and detail say so; the legend explains the stripes."""
    switch, interface = port_of(ui_lab, "n3")
    service = ui_lab.db.settings.service_vlan
    ui_lab.controller.switching.move_node("n3", service, enabled=False)
    try:
        sign_in(browser, ui_lab, "admin")
        port = wait_for(
            lambda: (
                (p := ports(browser).get((switch, interface), {})).get("disabled") == "true"
                and p["drift"] == "false"
                and p
            ),
            what="n3's port disabled and in sync",
        )
        assert port["kind"] == "service"
        box = browser.find_element(
            By.CSS_SELECTOR, f'.port[data-switch="{switch}"][data-interface="{interface}"]'
        )
        assert "port disabled" in box.get_attribute("title")
        box.click()
        detail = wait_for(
            lambda: browser.find_element(By.ID, "port-detail").text or None, what="port detail"
        )
        assert f"{service}, port disabled" in detail and "disabled" in detail.split("actual")[1]
        assert "disabled" in browser.find_element(By.ID, "legend").text
    finally:
        ui_lab.controller.switching.move_node("n3", service)


def audited(ui_lab, action: str, target: str) -> list[tuple[str, bool]]:
    with ui_lab.db.session() as s:
        query = select(AuditEntry).where(AuditEntry.action == action, AuditEntry.target == target)
        return [(e.actor.rsplit(":", 1)[1], e.ok) for e in s.scalars(query)]


def test_operator_actions_go_through_the_api_and_its_audit(browser, ui_lab) -> None:
    with ui_lab.db.session() as s:  # as the lifecycle leaves a node whose erase failed
        node = s.query(Node).filter_by(name="n3").one()
        node.state, node.state_reason = "quarantined", "erase failed"
    sign_in(browser, ui_lab, "admin")
    browser.find_element(By.CSS_SELECTOR, '.tab[data-view="nodes"]').click()
    wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, 'tr[data-node="n3"] button'),
        what="n3's clear button",
    ).click()
    wait_for(  # cleared: the clean plan erases n3 again before it is offered
        lambda: ui_lab.call("admin", "GET", "/v1/nodes/n3").json()["state"] == "available",
        timeout=120.0,
        what="n3 cleared and erased",
    )
    assert audited(ui_lab, "node clear", "n3") == [("ui-admin", True)]

    sign_in(browser, ui_lab, "beta")
    browser.find_element(By.CSS_SELECTOR, '.tab[data-view="nodes"]').click()
    wait_for(lambda: browser.find_element(By.ID, "spawn-name").is_displayed(), what="form")
    browser.find_element(By.ID, "spawn-name").send_keys("from-page")
    browser.find_element(By.ID, "spawn-image").send_keys(ui_lab.lab.image_url)
    browser.find_element(By.ID, "spawn-sha").send_keys(ui_lab.lab.image_sha256)
    browser.find_element(By.CSS_SELECTOR, "#spawn-form button").click()
    wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, '.timeline[data-instance="from-page"]'),
        what="the new instance's timeline",
    )
    wait_for(
        lambda: ui_lab.call("beta", "GET", "/v1/instances/from-page").json()["state"] == "active",
        timeout=90,
        what="from-page active",
    )
    wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, 'tr[data-instance="from-page"] button'),
        what="delete button",
    ).click()
    wait_for(
        lambda: ui_lab.call("beta", "GET", "/v1/instances/from-page").json()["state"] == "deleted",
        timeout=90,
        what="from-page deleted",
    )
    for action in ("instance create", "instance delete"):
        assert audited(ui_lab, action, "from-page") == [("ui-beta", True)]


def test_hostile_names_render_as_text(browser, ui_lab) -> None:
    # The API refuses such names (metalnet.validate), so this row is written behind its
    # back: the page must stay safe even if one reached the database some other way.
    with ui_lab.db.session() as s:
        project = s.query(Project).filter_by(name="alpha").one()
        s.add(
            Instance(
                name=HOSTILE,
                project=project,
                network=s.query(Network).filter_by(project_id=project.id).one(),
                node=s.query(Node).filter_by(name="n3").one(),
                image_url="http://img/x",
                sha256="a" * 64,
                state="deleted",
                step="deleted",
                error=f"{HOSTILE} <script>document.title = location.host</script>",
            )
        )
    sign_in(browser, ui_lab, "alpha")
    title = browser.title
    browser.find_element(By.CSS_SELECTOR, '.tab[data-view="nodes"]').click()
    cell = wait_for(
        lambda: next(
            (
                a
                for a in browser.find_elements(By.CSS_SELECTOR, "#instances a")
                if a.text == HOSTILE
            ),
            None,
        ),
        what="the hostile name as text",
    )
    assert cell.find_elements(By.TAG_NAME, "img") == []
    # typed into the spawn form, the API's error names the bad value: shown as text too
    browser.find_element(By.ID, "spawn-name").send_keys(HOSTILE)
    browser.find_element(By.ID, "spawn-image").send_keys("http://img/x")
    browser.find_element(By.ID, "spawn-sha").send_keys("a" * 64)
    browser.find_element(By.CSS_SELECTOR, "#spawn-form button").click()
    error = wait_for(lambda: browser.find_element(By.ID, "action-error").text, what="error")
    assert HOSTILE in error
    assert browser.find_elements(By.CSS_SELECTOR, "main img, main script") == []
    assert browser.title == title == "metalnet"


class _EvilSite(BaseHTTPRequestHandler):
    """Another site whose page posts a form to the dashboard's API on load."""

    target = ""

    def do_GET(self) -> None:
        forged = json.dumps({"name": "forged", "project": "alpha", "network": "net"})[:-1]
        page = (
            f'<form method="post" enctype="text/plain" action="{self.target}">'
            f'<input name=\'{forged}, "image_url": "http://img/x", "sha256": "{"a" * 64}", '
            f'"x": "\' value=\'"}}\'></form><script>document.forms[0].submit()</script>'
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(page.encode())

    def log_message(self, *args) -> None:
        pass


def test_a_cross_site_form_post_is_refused(browser, ui_lab) -> None:
    sign_in(browser, ui_lab, "admin")
    _EvilSite.target = ui_lab.url + "/v1/instances"
    evil = ThreadingHTTPServer(("127.0.0.1", 0), _EvilSite)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        # "localhost" is another site than "127.0.0.1": the browser treats it as such
        browser.get(f"http://localhost:{evil.server_address[1]}/")
        wait_for(lambda: browser.current_url.startswith(ui_lab.url), what="the form post")
        reply = wait_for(lambda: browser.find_element(By.TAG_NAME, "body").text, what="reply")
    finally:
        evil.shutdown()
    assert json.loads(reply)["error"]["code"] in ("unauthorized", "forbidden")
    assert ui_lab.call("admin", "GET", "/v1/instances/forged").status_code == 404


def test_page_cost(browser, ui_lab, artefacts) -> None:
    """Requests per second one open page makes, per view; reported, not asserted on time."""
    spawn_active(ui_lab, "alpha", "web", "n1")
    sign_in(browser, ui_lab, "admin")
    browser.set_script_timeout(30)
    app = ui_lab.controller.servers[0].config.app
    cost = {}
    for view in ("fabric", "nodes", "changes"):
        browser.find_element(By.CSS_SELECTOR, f'.tab[data-view="{view}"]').click()
        wait_for(lambda: browser.find_element(By.ID, f"view-{view}").is_displayed())  # noqa: B023
        if view == "nodes":  # with an instance's timeline open, as an operator would
            wait_for(
                lambda: browser.find_element(By.CSS_SELECTOR, 'tr[data-instance="web"] a')
            ).click()
        reads = app.state.device_reads.reads
        count, ms, busy = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "performance.clearResourceTimings();"
            "const t0 = performance.now();"
            "setTimeout(() => { const e = performance.getEntriesByType('resource');"
            "done([e.length, performance.now() - t0, e.reduce((n, r) => n + r.duration, 0)]);"
            "}, 10000);"
        )
        cost[view] = {
            "requests_per_second": round(count / (ms / 1000), 2),
            "mean_request_ms": round(busy / max(count, 1), 1),
            "switch_reads_per_second": round(
                (app.state.device_reads.reads - reads) / (ms / 1000), 2
            ),
        }
    browser.save_screenshot(str(artefacts / "changes.png"))
    cost["device_change_seen_after_s"] = change_seen_after(browser, ui_lab)
    (artefacts / "page-cost.json").write_text(json.dumps(cost, indent=2))
    print("page cost per open page:", json.dumps(cost))
    assert all(cost[view]["requests_per_second"] > 0 for view in ("fabric", "nodes", "changes"))


def change_seen_after(browser, ui_lab, times: int = 5) -> list[float]:
    """Seconds from a change on a switch (made at its console) to the fabric view showing it."""
    browser.find_element(By.CSS_SELECTOR, '.tab[data-view="fabric"]').click()
    switch = ui_lab.lab.fleet.switches[-1]
    interface = sorted(switch.port_vlans())[-1]  # a port no node is cabled to
    seen = []
    for i in range(times):
        vlan, kind = (ui_lab.db.settings.parking_vlan, "parking") if i % 2 == 0 else (1, "unknown")
        wait_for(lambda: browser.find_element(By.ID, "view-fabric").is_displayed())
        start = time.monotonic()
        switch.set_port_vlan_out_of_band(interface, vlan)
        wait_for(
            lambda: ports(browser)[(switch.name, interface)]["kind"] == kind,  # noqa: B023
            what=f"{interface} shown in {kind}",
        )
        seen.append(round(time.monotonic() - start, 2))
    switch.set_port_vlan_out_of_band(interface, 1)
    return seen


@pytest.fixture(scope="module", autouse=True)
def publish_screenshots(artefacts) -> Iterator[None]:
    """Screenshots stay in the artefacts; METALNET_UI_DOCS=1 also copies them to docs/."""
    yield
    if os.environ.get("METALNET_UI_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        for name in ("fabric.png", "timeline.png"):
            if (artefacts / name).exists():
                shutil.copy(artefacts / name, DOCS / name)
