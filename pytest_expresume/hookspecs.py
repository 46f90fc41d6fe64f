"""Hooks that conftests and plugins implement to shape and follow an experiment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .recording import RunRecord


@pytest.hookspec()
def pytest_expresume_configure(config: pytest.Config, experiment: dict[str, Any]) -> None:
    """Adjust the given experiment config dict in place (e.g. fold in own command-line options)."""


@pytest.hookspec(firstresult=True)
def pytest_expresume_subtests(
    config: pytest.Config, experiment: dict[str, Any], tier: str
) -> Sequence[str] | None:
    """Return the subtest names of ``tier`` when the config does not list them."""


@pytest.hookspec(firstresult=True)
def pytest_expresume_result_status(result: dict[str, Any], path: Path) -> str | None:
    """Return the status of a result file written by another tool, or None if unknown."""


@pytest.hookspec()
def pytest_expresume_run_recorded(config: pytest.Config, record: RunRecord) -> None:
    """Called after each run's status is recorded (its result file written first)."""
