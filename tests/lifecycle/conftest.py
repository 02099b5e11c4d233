"""Fixtures for lifecycle tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from labworld import World, world_with


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Two Redfish nodes on one simulated Junos switch, projects alpha and beta."""
    with world_with(tmp_path) as w:
        yield w
