"""Run statuses: their names, when a run is done, and counting them per tier.

Every count the plugin shows (the session summary, ``--experiment-status``, a rebuild's
report, the ``experiment`` fixture's counts) comes from :func:`tally`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .grid import RunKey

RunStatus = Literal["passed", "failed", "error", "skipped"]
RUN_STATUSES: tuple[RunStatus, ...] = ("passed", "failed", "error", "skipped")
ExperimentState = Literal["running", "paused_rate_limit", "interrupted", "completed"]
EXPERIMENT_STATES: tuple[ExperimentState, ...] = (
    "running",
    "paused_rate_limit",
    "interrupted",
    "completed",
)
#: The states a session in progress leaves on disk: found so with nobody holding the
#: experiment, they mean the session died.
LIVE_STATES: tuple[ExperimentState, ...] = ("running", "paused_rate_limit")


_BY_NAME: dict[object, RunStatus] = {status: status for status in RUN_STATUSES}


def as_run_status(value: object) -> RunStatus | None:
    """``value`` as a run status, or None when it is not one."""
    return _BY_NAME.get(value)


def is_done(status: str | None, rerun: Collection[str]) -> bool:
    """A run with this recorded status will not run again (``rerun``: ``--rerun``)."""
    return status is not None and status not in rerun


def grid_complete(
    completed: Mapping[RunKey, str], grid: Iterable[RunKey], rerun: Collection[str]
) -> bool:
    """Every run of the grid has a final status outside ``--rerun``."""
    return all(is_done(completed.get(key), rerun) for key in grid)


def _zeros() -> dict[str, int]:
    return dict.fromkeys(RUN_STATUSES, 0)


@dataclass
class TierCounts:
    """Runs of one tier (or of all) by status; ``runs`` is None when the grid is unknown."""

    runs: int | None
    counts: dict[str, int] = field(default_factory=_zeros)

    def add(self, status: str) -> None:
        """Count one more run with ``status``."""
        self.counts[status] = self.counts.get(status, 0) + 1

    @property
    def recorded(self) -> int:
        """Runs with any status."""
        return sum(self.counts.values())

    @property
    def pending(self) -> int | None:
        """Runs with no status yet."""
        return None if self.runs is None else self.runs - self.recorded

    @property
    def pass_rate(self) -> float | None:
        """passed / (passed + failed): the share of verdicts that passed."""
        verdicts = self.counts["passed"] + self.counts["failed"]
        return None if verdicts == 0 else self.counts["passed"] / verdicts

    def done(self, rerun: Collection[str]) -> int:
        """Runs whose status will not run again."""
        return sum(n for status, n in self.counts.items() if is_done(status, rerun))


@dataclass
class Tally:
    """Status counts per tier (in grid order) and in total."""

    tiers: dict[str, TierCounts] = field(default_factory=dict)
    total: TierCounts = field(default_factory=lambda: TierCounts(runs=None))
    #: Recorded runs that are not in the grid (counted nowhere else).
    outside: int = 0

    def add(self, key: RunKey, status: str) -> None:
        """Count one recorded run."""
        self.tiers.setdefault(key.tier, TierCounts(runs=None)).add(status)
        self.total.add(status)


def tally(completed: Mapping[RunKey, str], grid: Iterable[RunKey] | None = None) -> Tally:
    """Count ``completed`` per tier: over the grid's runs when it is known (each tier's
    ``runs`` set, runs outside it counted apart), else over what ``completed`` lists."""
    counted = Tally()
    if grid is None:
        for key, status in sorted(completed.items()):
            counted.add(key, status)
        return counted
    counted.total.runs = 0
    for key in grid:
        tier = counted.tiers.setdefault(key.tier, TierCounts(runs=0))
        tier.runs = (tier.runs or 0) + 1
        counted.total.runs += 1
        found = completed.get(key)
        if found is not None:
            tier.add(found)
            counted.total.add(found)
    counted.outside = len(completed) - counted.total.recorded
    return counted
