"""The per-switch advisory lock: its reconnect budget is the one retry policy's."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy.exc import DBAPIError

from metalnet.config import load_settings
from metalnet.db.engine import Database
from metalnet.switches.advisory import RECONNECT, AdvisoryLock


def test_a_database_that_stays_away_is_retried_on_the_policy_then_reported(
    virtual_clock: list[float],
) -> None:
    """A real PostgreSQL client against a port nobody listens on: every connect fails."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = Database(load_settings(None, f"postgresql+psycopg://u:p@127.0.0.1:{port}/metalnet"))
    try:
        with pytest.raises(DBAPIError), AdvisoryLock(db).held("tor1"):
            pytest.fail("the block must not run without the lock")
    finally:
        db.engine.dispose()
    assert virtual_clock == [2.0, 4.0, 8.0, 16.0]
    assert len(virtual_clock) == RECONNECT.attempts - 1
