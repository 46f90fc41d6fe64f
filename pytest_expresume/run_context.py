"""What tests receive: the run context of ``experiment_run`` and the session's experiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from .grid import RunKey


class ExpresumeWarning(pytest.PytestWarning):
    """A warning about the experiment (e.g. a given config value that was ignored)."""


@dataclass(frozen=True, repr=False)
class RunContext:
    """What ``experiment_run`` gives a test: one run of the grid.

    ``config`` is the authoritative experiment config as a read-only view (mappings are
    ``MappingProxyType``, lists are tuples). ``result`` is the test's to fill; it is saved
    at the top level of the run's ``run_result.json``.
    """

    tier: str
    subtest: str
    run: int
    dir: Path
    config: MappingProxyType[str, Any]
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> RunKey:
        """The run key (tier, subtest, run)."""
        return RunKey(self.tier, self.subtest, self.run)

    def __repr__(self) -> str:
        # Short on purpose: pytest prints it in every failure's traceback.
        return f"RunContext({self.key.test_id}, result={self.result!r})"


@dataclass(frozen=True)
class ExperimentInfo:
    """What the session fixture ``experiment`` gives: the experiment as the session began."""

    config: MappingProxyType[str, Any]
    dir: Path
    #: Counts at session start: runs, done, passed, failed, error, skipped, to_run.
    counts: MappingProxyType[str, int]
