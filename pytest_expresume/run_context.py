"""What tests receive: the run context of ``experiment_run`` and the session's experiment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import pytest

from .grid import RunKey
from .steps import StepBook

_T = TypeVar("_T")


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
    #: The attempt's steps (see :meth:`step`).
    steps: StepBook | None = field(default=None, compare=False)

    @property
    def key(self) -> RunKey:
        """The run key (tier, subtest, run)."""
        return RunKey(self.tier, self.subtest, self.run)

    def step(self, name: str, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """Call ``fn(*args, **kwargs)`` as the run's step ``name`` and save its value as
        ``<run dir>/steps/<name>.json``.

        When the run runs again, a step its newest earlier attempt finished is not called:
        its saved value is returned (as JSON gives it back) and its step dir carried over.
        Reuse is a prefix: once a step runs, every later step runs too.
        """
        book = self._book()
        value: _T = book.run(name, fn, args, kwargs)
        if book.stops_after(name):
            book.stopped_after = name
            pytest.skip(f"expresume: stopped after step {name!r} (--until-step)")
        return value

    def step_dir(self, name: str) -> Path:
        """``<run dir>/steps/<name>/``, created: where the step keeps its files."""
        return self._book().step_dir(name)

    def _book(self) -> StepBook:
        if self.steps is None:
            # A context made by hand (in a unit test): steps are saved, none reused.
            object.__setattr__(self, "steps", StepBook(self.dir, None))
        assert self.steps is not None
        return self.steps

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
