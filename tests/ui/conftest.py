"""A running lab for the dashboard: `metalnet serve`'s controller over two simulated
Junos switches (real NETCONF over SSH) and four Redfish nodes, two projects with a
token each, and headless Debian Chromium driven by Selenium through Debian's
chromedriver (nothing downloads a browser)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from metalnet import apitokens, inventory
from metalnet.controller import Controller
from metalnet.db.engine import Database, upgrade
from metalnet.demo import demo_settings
from metalnet.reconcile import reconcile
from metalnet.sim.lab import Lab

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)
PROJECTS = {"alpha": "10.20.0.0/24", "beta": "10.30.0.0/24"}


@dataclass
class UiLab:
    """What a dashboard test works with: the server's URL, tokens, lab and database."""

    url: str
    tokens: dict[str, str]
    db: Database
    lab: Lab
    vlans: dict[str, int]
    controller: Controller

    def call(self, role: str, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[role]}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def ui_lab(tmp_path_factory) -> Iterator[UiLab]:
    tmp = tmp_path_factory.mktemp("uilab")
    settings = dataclasses.replace(demo_settings(tmp), step_timeout=30.0)
    db = Database(settings)
    upgrade(db.engine)
    lab = Lab(tmp / "lab", settings, nodes=4, switches=2, ports=8, bmc="redfish")
    lab.start()
    try:
        lab.register(db)
        tokens, vlans = {}, {}
        with db.session() as s:
            for project, cidr in PROJECTS.items():
                inventory.create_project(s, project)
                vlans[project] = inventory.create_network(s, settings, project, "net", cidr).vlan
            for role, project in (("admin", None), ("alpha", "alpha"), ("beta", "beta")):
                tokens[role] = apitokens.create(s, f"ui-{role}", project)[1]
        reconcile(db)  # the nodes' ports start where the database wants them
        with Controller(db) as controller:
            url = f"http://{controller.host}:{controller.port}"
            yield UiLab(url, tokens, db, lab, vlans, controller)
    finally:
        lab.stop()
        db.engine.dispose()


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory) -> Path:
    """Where screenshots and measurements go (METALNET_UI_ARTEFACTS, else a tmp dir)."""
    where = os.environ.get("METALNET_UI_ARTEFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("ui-artefacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as exc:  # the page is being re-rendered under us
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: {last!r}")
