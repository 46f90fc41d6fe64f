"""``--experiment-status``: counts per tier, read without changing anything."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, validate
from .grid import Grid, RunKey, build_grid
from .layout import load_saved_config
from .rebuild import recover_checkpoint
from .scanner import ResultStatus
from .store import RUN_STATUSES, Checkpoint

_COLUMNS = ("runs", *RUN_STATUSES, "pending", "pass rate")


@dataclass
class TierCounts:
    """Runs of one tier by status; ``runs`` is None when the grid is not known."""

    runs: int | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RUN_STATUSES, 0))

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


@dataclass
class ExperimentStatus:
    """What ``--experiment-status`` shows."""

    experiment_dir: Path
    checkpoint: Checkpoint
    tiers: dict[str, TierCounts]
    total: TierCounts
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The table a user reads."""
        header = f"{'tier':<12}" + "".join(f"{c:>10}" for c in _COLUMNS)
        lines = [
            f"expresume: {self.checkpoint.experiment_id} at {self.experiment_dir}",
            header,
        ]
        lines += [_row(name, tier) for name, tier in self.tiers.items()]
        lines.append(_row("total", self.total))
        lines.append(
            f"state: {self.checkpoint.status}, last update {self.checkpoint.last_updated_at}"
        )
        lines += self.notes
        return lines


def _cell(value: int | None) -> str:
    return "?" if value is None else str(value)


def _row(name: str, tier: TierCounts) -> str:
    rate = tier.pass_rate
    cells = [
        _cell(tier.runs),
        *(_cell(tier.counts[s]) for s in RUN_STATUSES),
        _cell(tier.pending),
        "-" if rate is None else f"{rate:.1%}",
    ]
    return f"{name:<12}" + "".join(f"{c:>10}" for c in cells)


def experiment_status(
    experiment_dir: Path, checkpoint: Checkpoint, grid: Iterable[RunKey] | None
) -> ExperimentStatus:
    """Counts per tier over the grid (or, without one, over what the checkpoint lists)."""
    tiers: dict[str, TierCounts] = {}
    completed = checkpoint.completed_runs
    if grid is not None:
        for key in grid:
            tier = tiers.setdefault(key.tier, TierCounts(runs=0))
            tier.runs = (tier.runs or 0) + 1
            status = completed.get(key)
            if status is not None:
                tier.counts[status] += 1
    else:
        for key, status in sorted(completed.items()):
            tiers.setdefault(key.tier, TierCounts(runs=None)).counts[status] += 1
    known = grid is not None
    notes: list[str] = []
    if grid is not None:
        outside = len(completed) - sum(t.recorded for t in tiers.values())
        if outside:
            notes.append(f"note: {outside} recorded runs are outside the grid and not counted")
    total = TierCounts(runs=sum(t.runs or 0 for t in tiers.values()) if known else None)
    for tier in tiers.values():
        for status, n in tier.counts.items():
            total.counts[status] += n
    return ExperimentStatus(experiment_dir, checkpoint, tiers, total, notes)


def read_experiment_status(
    experiment_dir: Path, *, result_status: ResultStatus | None = None
) -> ExperimentStatus:
    """Counts per tier of an experiment dir, for scripts and notebooks (reads only).

    The grid comes from the saved config when it lists its subtests; otherwise the counts
    cover the runs the checkpoint lists. A corrupt checkpoint is rebuilt in memory.
    """
    checkpoint, corruption = recover_checkpoint(experiment_dir, result_status=result_status)
    grid = None
    try:
        saved = load_saved_config(experiment_dir)
        if saved is not None:
            grid = build_grid(validate(saved), lambda tier: None)
    except ConfigError:
        grid = None
    status = experiment_status(experiment_dir, checkpoint, grid)
    if corruption:
        status.notes.append(f"note: the checkpoint cannot be read ({corruption})")
    return status


def session_summary(
    grid: Grid,
    completed: Mapping[RunKey, str],
    this_session: Counter[tuple[str, str]],
    rerun: frozenset[str],
) -> list[str]:
    """The end-of-session table: per tier, each count as ``total (+this session)``.

    ``done`` counts runs with a final status outside ``rerun`` (they will not run again).
    """
    columns = ("done", *RUN_STATUSES)
    rows: list[list[str]] = [["tier", "runs", *columns]]
    totals = {name: [0, 0] for name in ("runs", *columns)}
    for tier, subtests in grid.subtests.items():
        counts = {name: [0, 0] for name in columns}
        for subtest in subtests:
            for run in range(1, grid.runs + 1):
                status = completed.get(RunKey(tier, subtest, run))
                if status is not None:
                    counts[status][0] += 1
                    counts["done"][0] += status not in rerun
        for status in RUN_STATUSES:
            counts[status][1] = this_session[tier, status]
            counts["done"][1] += this_session[tier, status] if status not in rerun else 0
        runs = len(subtests) * grid.runs
        totals["runs"][0] += runs
        for name in columns:
            totals[name][0] += counts[name][0]
            totals[name][1] += counts[name][1]
        rows.append([tier, str(runs), *(f"{counts[c][0]} (+{counts[c][1]})" for c in columns)])
    rows.append(
        ["total", str(totals["runs"][0]), *(f"{totals[c][0]} (+{totals[c][1]})" for c in columns)]
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        row[0].ljust(widths[0])
        + "".join(f"  {cell:>{w}}" for cell, w in zip(row[1:], widths[1:], strict=True))
        for row in rows
    ]
