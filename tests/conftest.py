"""Fixtures shared by the test modules (helpers to import are in expresume_testing.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from expresume_testing import EXPERIMENT


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    """An empty experiment dir, named as the plugin names them."""
    directory = tmp_path / EXPERIMENT
    directory.mkdir()
    return directory
