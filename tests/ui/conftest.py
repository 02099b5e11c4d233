"""Fixtures for the dashboard tests: a running lab and a headless browser (uilab.py)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from uilab import CHROME_FLAGS, CHROMEDRIVER, CHROMIUM, PROJECTS, UiLab

from metalnet import apitokens, inventory
from metalnet.controller import Controller
from metalnet.db.engine import Database, upgrade
from metalnet.sim.lab.lab import Lab
from metalnet.sim.lab.world import lab_settings as demo_settings
from metalnet.switches.reconcile import reconcile


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
