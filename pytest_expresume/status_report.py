"""``--experiment-status``: counts per tier, read without changing anything."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, validate
from .grid import RunKey, build_grid
from .layout import load_saved_config, run_dir
from .rebuild import recover_checkpoint
from .results import TierFigures, wilson_interval
from .scanner import ResultStatus
from .session_lock import dead_session, describe_holder, running_session
from .statuses import LIVE_STATES, RUN_STATUSES, Tally, TierCounts, tally
from .steps import finished_steps
from .store import Checkpoint, CheckpointError, CheckpointStore

_COLUMNS = ("runs", *RUN_STATUSES, "pending", "pass rate")


@dataclass
class ExperimentStatus:
    """What ``--experiment-status`` shows."""

    experiment_dir: Path
    checkpoint: Checkpoint
    tiers: dict[str, TierCounts]
    total: TierCounts
    #: The experiment's state as the status shows it: the checkpoint's, except that a
    #: ``running`` experiment whose session died is ``interrupted (its session died: ...)``.
    state: str = ""
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
        if self.state and self.state != self.checkpoint.status:
            lines.append(f"state: {self.state}")  # it names the last update itself
        else:
            lines.append(
                f"state: {self.checkpoint.status}, last update {self.checkpoint.last_updated_at}"
            )
        lines += self.notes
        return lines


def figure_lines(
    tiers: Mapping[str, TierCounts], total: TierCounts, figures: Mapping[str, TierFigures]
) -> list[str]:
    """The second table of ``--experiment-status``, from the result files: per tier the
    total duration and cost, the pass rate with its 95% Wilson interval (over passed and
    failed runs), and an ETA for the pending runs (their count times the tier's mean run
    duration so far, else the experiment's)."""
    overall = figures.get("total", TierFigures()).mean_duration
    etas: dict[str, float | None] = {}
    for name, counts in tiers.items():
        mean = figures.get(name, TierFigures()).mean_duration or overall
        pending = counts.pending
        etas[name] = None if pending is None or mean is None else pending * mean
    known = [eta for eta in etas.values() if eta is not None]
    etas["total"] = sum(known) if len(known) == len(etas) else None
    rows = [["tier", "duration", "cost", "pass rate (95% CI)", "eta (pending)"]]
    for name, counts in [*tiers.items(), ("total", total)]:
        tier = figures.get(name, TierFigures())
        cost = f"{tier.cost:.2f}" if tier.costed else "-"
        rate = "-"
        if tier.verdicts:
            low, high = wilson_interval(tier.passed, tier.verdicts)
            rate = f"{tier.passed / tier.verdicts:.1%} [{low:.1%}, {high:.1%}]"
        eta_seconds = etas.get(name)
        if counts.pending == 0:
            eta = "done"
        elif eta_seconds is None:
            eta = "?"
        else:
            eta = f"{_duration(eta_seconds)} ({counts.pending})"
        rows.append([name, _duration(tier.duration_seconds), cost, rate, eta])
    return _aligned(rows)


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows as text: the first column left-aligned, the others right-aligned, each as wide
    as its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        row[0].ljust(widths[0])
        + "".join(f"  {cell:>{w}}" for cell, w in zip(row[1:], widths[1:], strict=True))
        for row in rows
    ]


def _duration(seconds: float) -> str:
    """``1:02:03`` (hours, minutes, seconds), or ``12.3s`` under a minute."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


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
    counted = tally(checkpoint.completed_runs, grid)
    notes: list[str] = []
    if counted.outside:
        notes.append(f"note: {counted.outside} recorded runs are outside the grid and not counted")
    if grid is not None:
        steps = _last_steps_of_pending(experiment_dir, grid, checkpoint)
        if steps:
            listed = ", ".join(f"{name} done: {count}" for name, count in steps.items())
            notes.append(f"pending runs with finished steps: {listed}")
    if checkpoint.status == "paused_rate_limit":
        notes.append(
            f"paused for a rate limit until {checkpoint.extra.get('rate_limit_until')} "
            f"({checkpoint.extra.get('rate_limit_source')}; "
            f"{checkpoint.extra.get('pause_count')} pauses so far)"
        )
    state = checkpoint.status
    holder = running_session(experiment_dir)
    if holder is not None:
        notes.append(f"a session is running now: {describe_holder(holder)}")
    elif checkpoint.status in LIVE_STATES:
        dead = dead_session(experiment_dir)
        if dead is not None:
            state = session_died(dead, checkpoint)
        else:
            state = _without_note(experiment_dir, checkpoint)
    return ExperimentStatus(
        experiment_dir, checkpoint, counted.tiers, counted.total, state=state, notes=notes
    )


def _last_steps_of_pending(
    experiment_dir: Path, grid: Iterable[RunKey], checkpoint: Checkpoint
) -> dict[str, int]:
    """Per step name, how many pending runs stopped with it as their last finished step
    (``--until-step``, an error or a kill half way): one failed open for a run without."""
    found: Counter[str] = Counter()
    completed = checkpoint.completed_runs
    for key in grid:
        if key in completed:
            continue
        steps = finished_steps(run_dir(experiment_dir, key))
        if steps:
            found[steps[-1]] += 1
    return dict(sorted(found.items()))


def _without_note(experiment_dir: Path, checkpoint: Checkpoint) -> str:
    """The state of a ``running`` experiment that nobody holds and no session's note names:
    one of ours that ended cleanly since the checkpoint was read (its new state stands), or
    a session that left no note (ProjectScylla's own runner, a lock file removed) and died."""
    try:
        with CheckpointStore(experiment_dir, fsync=False) as store:
            now = store.load()
    except (OSError, CheckpointError):
        now = checkpoint
    if now.status not in LIVE_STATES:
        return now.status
    pid = now.extra.get("pid")  # ProjectScylla's checkpoint names its process
    if type(pid) is int and pid > 0 and _process_alive(pid):
        return now.status  # maybe its runner, alive on this host: not ours to call dead
    return session_died({"pid": pid if pid is not None else "?"}, now)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False  # none has it (or none can)
    except PermissionError:
        return True  # another user's
    return True


def session_died(holder: Mapping[str, Any], checkpoint: Checkpoint) -> str:
    """The state of a ``running`` experiment whose session died, from the note it left."""
    return (
        f"interrupted (its session died: pid {holder.get('pid', '?')}, "
        f"host {holder.get('host', '?')}, last update {checkpoint.last_updated_at})"
    )


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
    grid: Iterable[RunKey],
    completed: Mapping[RunKey, str],
    this_session: Tally,
    rerun: Collection[str],
) -> list[str]:
    """The end-of-session table: per tier, each count as ``total (+this session)``.

    ``done`` counts runs with a final status outside ``rerun`` (they will not run again).
    """
    counted = tally(completed, grid)
    rows: list[list[str]] = [["tier", "runs", "done", *RUN_STATUSES]]
    for name, tier in [*counted.tiers.items(), ("total", counted.total)]:
        session = this_session.total if name == "total" else this_session.tiers.get(name)
        session = session or TierCounts(runs=None)
        cells = [f"{tier.done(rerun)} (+{session.done(rerun)})"]
        cells += [f"{tier.counts[s]} (+{session.counts[s]})" for s in RUN_STATUSES]
        rows.append([name, str(tier.runs), *cells])
    lines = _aligned(rows)
    if counted.outside:
        lines.append(
            f"{counted.outside} recorded runs are outside the grid: kept, not run, not counted"
        )
    return lines
