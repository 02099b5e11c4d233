"""Hardening tests: a CLI on a fresh SQLite file whose secret keys live in the test's
own directory (XDG_DATA_HOME), never in the user's."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path, monkeypatch) -> None:
    """The default key file (and any embedded database) under the test's directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("METALNET_SECRET_KEY", raising=False)


@pytest.fixture
def run(cli, sqlite_url):
    """`metalnet --db <fresh file> ...` after `db upgrade`."""

    def invoke(*args: str, input: str | None = None):
        return cli("--db", sqlite_url, *args, input=input)

    assert invoke("db", "upgrade").exit_code == 0
    return invoke
