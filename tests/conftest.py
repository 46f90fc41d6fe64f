"""Fixtures shared by the test modules (helpers to import are in expresume_testing.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from expresume_testing import EXPERIMENT


@pytest.fixture(autouse=True)
def _signal_handlers_left_alone() -> Iterator[None]:
    """Sessions run in this process install a SIGTERM handler: each must put it back."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    changed = [sig.name for sig, handler in before.items() if signal.getsignal(sig) != handler]
    for sig, handler in before.items():
        signal.signal(sig, handler)
    assert not changed, f"a session run in-process left its {changed} handler installed"


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    """An empty experiment dir, named as the plugin names them."""
    directory = tmp_path / EXPERIMENT
    directory.mkdir()
    return directory
