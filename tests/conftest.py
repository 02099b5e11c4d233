"""Shared fixtures: settings on a throwaway database (SQLite, and PostgreSQL where asked)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from metalnet.config import Settings, load_settings
from metalnet.db.engine import Database, upgrade
from metalnet.sim.lab.postgres import PgCluster, find_pg_bin


@pytest.fixture(scope="session", autouse=True)
def secret_key() -> Iterator[None]:
    """One encryption key for stored secrets for the whole run, given to every process
    the tests start (METALNET_SECRET_KEY): databases seeded here stay readable by a
    `metalnet serve` started with another HOME, and no test writes the user's key file."""
    from cryptography.fernet import Fernet

    previous = os.environ.get("METALNET_SECRET_KEY")
    os.environ["METALNET_SECRET_KEY"] = Fernet.generate_key().decode()
    yield
    if previous is None:
        del os.environ["METALNET_SECRET_KEY"]
    else:
        os.environ["METALNET_SECRET_KEY"] = previous


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL cluster for the whole run; CI (METALNET_REQUIRE_PG=1) must have it."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        if os.environ.get("METALNET_REQUIRE_PG"):
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) not found but METALNET_REQUIRE_PG=1")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not installed")
    cluster = PgCluster(bin_dir)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metalnet.db'}"
    return request.getfixturevalue("pg_cluster").new_database()


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Default settings pointing at the fresh database."""
    return load_settings(None, database_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """A migrated database."""
    database = Database(settings)
    upgrade(database.engine)
    yield database
    database.engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A SQLite URL in the test's temporary directory, for CLI tests."""
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    """Run `metalnet ...` in-process; returns the typer Result (exit_code, stdout, stderr)."""
    from metalnet.cli.main import app

    monkeypatch.delenv("METALNET_CONFIG", raising=False)
    monkeypatch.delenv("METALNET_DATABASE_URL", raising=False)
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input)

    return run


@pytest.fixture
def virtual_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Back-off without waiting: `metalnet.retry` sleeps advance a virtual clock.

    Returns the list of waits the code asked for, so a test can assert the policy.
    """
    from metalnet import retry

    waited: list[float] = []
    offset = [0.0]
    real = retry.clock

    def fake_sleep(seconds: float) -> None:
        waited.append(seconds)
        offset[0] += seconds

    monkeypatch.setattr(retry, "sleep", fake_sleep)
    monkeypatch.setattr(retry, "clock", lambda: real() + offset[0])
    return waited
