"""What every process that runs tests needs of the experiment: one snapshot, taken once.

In-process it comes straight from the opened experiment; under pytest-xdist the controller
hands the same snapshot to every worker, so all of them collect and deselect alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from .config import freeze
from .grid import Grid, RunKey
from .opening import OpenedExperiment


@dataclass(frozen=True)
class ExperimentSnapshot:
    """The experiment dir, the authoritative config, the grid and the runs that are done."""

    experiment_dir: Path
    experiment: dict[str, Any]
    grid: Grid
    skip: frozenset[RunKey]
    #: Runs in flight when a session died: they run after the other runs.
    in_flight: frozenset[RunKey]
    #: Counts over the grid as the session began (the ``experiment`` fixture's).
    counts: MappingProxyType[str, int]
    #: Flush result files (ini ``expresume_fsync``).
    fsync: bool
    #: ``--from-step`` and ``--until-step``.
    from_step: str | None = None
    until_step: str | None = None
    #: The longest rate-limit pause, in seconds (ini ``expresume_max_pause``).
    max_pause: float = 3600
    #: This process can see the experiment dir, so it writes its runs' result files
    #: itself (in-process; an xdist worker on a shared filesystem): a run that finishes
    #: after the recording process died is still on disk for the next start.
    writes_results: bool = True

    @cached_property
    def config(self) -> MappingProxyType[str, Any]:
        """The config as tests see it: read-only, nested values included."""
        frozen: MappingProxyType[str, Any] = freeze(self.experiment)
        return frozen

    @classmethod
    def of(cls, opened: OpenedExperiment) -> ExperimentSnapshot:
        """The snapshot of an experiment this process opened."""
        return cls(
            experiment_dir=opened.experiment_dir.resolve(),
            experiment=opened.plan.experiment,
            grid=opened.grid,
            skip=opened.skip,
            in_flight=opened.in_flight,
            counts=MappingProxyType(dict(opened.counts)),
            fsync=opened.settings.fsync,
            from_step=opened.settings.from_step,
            until_step=opened.settings.until_step,
            max_pause=opened.settings.max_pause,
        )

    def to_handoff(self) -> dict[str, Any]:
        """Plain values that cross to an xdist worker (``workerinput``)."""
        return {
            "fsync": self.fsync,
            "from_step": self.from_step,
            "until_step": self.until_step,
            "max_pause": self.max_pause,
            "experiment_dir": str(self.experiment_dir),
            "experiment": orjson.dumps(self.experiment).decode(),
            "grid": self.grid.to_json(),
            "skip": [list(key) for key in self.skip],
            "in_flight": [list(key) for key in self.in_flight],
            "counts": dict(self.counts),
        }

    @classmethod
    def from_handoff(cls, data: dict[str, Any], *, writes_results: bool) -> ExperimentSnapshot:
        """Inverse of :meth:`to_handoff`, on a worker that can see the experiment dir or not."""
        return cls(
            fsync=bool(data["fsync"]),
            from_step=data.get("from_step"),
            until_step=data.get("until_step"),
            max_pause=float(data.get("max_pause", 3600)),
            writes_results=writes_results,
            experiment_dir=Path(data["experiment_dir"]),
            experiment=orjson.loads(data["experiment"]),
            grid=Grid.from_json(data["grid"]),
            skip=frozenset(RunKey(t, s, r) for t, s, r in data["skip"]),
            in_flight=frozenset(RunKey(t, s, r) for t, s, r in data["in_flight"]),
            counts=MappingProxyType(dict(data["counts"])),
        )
