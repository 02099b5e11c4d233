"""Helpers for the dashboard tests. The fixtures (conftest.py) run `metalnet serve`'s
controller over two simulated Junos switches (real NETCONF over SSH) and four Redfish
nodes, with two projects and a token each, and headless Debian Chromium driven by
Selenium through Debian's chromedriver (nothing downloads a browser)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from metalnet.controller import Controller
from metalnet.db.engine import Database
from metalnet.sim.lab.lab import Lab

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
