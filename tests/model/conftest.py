"""The model's lab, settled (its nodes' initial erase done), for focused tests."""

from __future__ import annotations

import pytest

from metalnet.sim.lab.model import ModelLab


@pytest.fixture
def lab():
    model = ModelLab()
    try:
        model.settle()
        yield model
    finally:
        model.close()
