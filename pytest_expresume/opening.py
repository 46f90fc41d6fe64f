"""Opening an experiment for a session: lock it, read its newest checkpoint, repair a corrupt
one, reconcile result files the index missed, and decide which runs are done.

Pure of pytest: the result is a frozen :class:`OpenedExperiment`, built once before any
hook needs it; every refusal is a :class:`~pytest_expresume.config.ConfigError`. When the
first run starts, :func:`begin_recording` makes its experiment dir ready.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from .atomic_write import make_dirs
from .clock import utc_now
from .config import ConfigError
from .grid import Grid, RunKey
from .growth import GridOf, describe_grid_change, saved_with_grid
from .layout import (
    CHECKPOINT_NAME,
    CONFIG_RELPATH,
    load_saved_config,
    remove_stale_temp_files,
    save_config,
)
from .planning import SessionPlan
from .rate_limits import clear_session_files
from .rebuild import RebuildReport, rebuild_checkpoint
from .recording import RunRecorder
from .scanner import ResultStatus, interrupted_runs, unrecorded_results, unwhole_results
from .session_lock import ExperimentBusy, SessionLock
from .statuses import LIVE_STATES, RUN_STATUSES, RunStatus, is_done, tally
from .store import Checkpoint, CheckpointError, CheckpointStore


@dataclass(frozen=True)
class SessionSettings:
    """The options that change how a session treats its experiment."""

    #: Recorded statuses that run again (``--rerun``).
    rerun: frozenset[str] = frozenset({"error"})
    #: Flush result files and snapshots (ini ``expresume_fsync``).
    fsync: bool = True
    #: The status of result files that have none of their own (the hook).
    result_status: ResultStatus | None = None
    #: ``--collect-only``: show what would run, write nothing, lock nothing.
    collect_only: bool = False
    #: ``--from-step``: steps before it are reused, it and later ones run.
    from_step: str | None = None
    #: ``--until-step``: each run stops after this step, unrecorded.
    until_step: str | None = None
    #: Stop after this many runs in a row end in error (0: never).
    max_errors: int = 10
    #: The longest rate-limit pause, in seconds (ini ``expresume_max_pause``).
    max_pause: float = 3600


@dataclass(frozen=True)
class Notice:
    """Something the user must hear about once, located at the file it concerns."""

    text: str
    path: Path


@dataclass(frozen=True)
class OpenedExperiment:
    """The experiment of one session as it stands before the first run."""

    plan: SessionPlan
    grid: Grid
    settings: SessionSettings
    #: The newest checkpoint, repaired and reconciled (None: a new experiment).
    checkpoint: Checkpoint | None
    #: Runs of the grid that are done: they are deselected.
    skip: frozenset[RunKey]
    #: Runs whose result files the checkpoint did not list, recorded when the session starts.
    reconciled: Mapping[RunKey, RunStatus]
    #: Runs in flight when a session died (a run dir, no result file): they run last, so
    #: one that kills the process cannot keep the others from running.
    in_flight: frozenset[RunKey]
    notices: tuple[Notice, ...]
    #: Held from here to the session's end when resuming; taken when a new dir is made.
    lock: SessionLock
    #: Counts over the grid: runs, done, passed, failed, error, skipped, to_run.
    counts: Mapping[str, int]
    #: How the grid given now differs from the saved one, in runs (None: it does not).
    grid_told: str | None = None
    #: The session before died: the result files of the runs it recorded were checked.
    checked_results: bool = False
    #: Of those, runs listed as done whose result file is not whole: they run again.
    unwhole: frozenset[RunKey] = frozenset()

    @property
    def experiment_dir(self) -> Path:
        """Where the experiment lives."""
        return self.plan.experiment_dir


def repair_checkpoint(
    experiment_dir: Path, grid: Collection[RunKey] | None, settings: SessionSettings
) -> RebuildReport:
    """Rebuild the checkpoint from the result files, a corrupt one set aside: the one way
    ``--rebuild-checkpoint`` and a session's start repair an experiment."""
    return rebuild_checkpoint(
        experiment_dir,
        result_status=settings.result_status,
        fsync=settings.fsync,
        set_aside_corrupt=True,
        grid_keys=grid,
        rerun=settings.rerun,
    )


def open_experiment(
    plan: SessionPlan, grid: Grid, settings: SessionSettings, grid_of: GridOf | None = None
) -> OpenedExperiment:
    """Open ``plan``'s experiment; a resume takes the session lock first (ExperimentBusy
    becomes a ConfigError naming the running session). ``grid_of`` tells a grid change in
    runs."""
    lock = SessionLock(plan.experiment_dir)
    if plan.mode != "resume" or settings.collect_only:
        return _opened(plan, grid, settings, lock, grid_of)
    try:
        lock.acquire()
    except ExperimentBusy as exc:
        raise ConfigError(str(exc)) from None
    try:
        return _opened(plan, grid, settings, lock, grid_of)
    except BaseException:
        lock.release()
        raise


def _opened(
    plan: SessionPlan,
    grid: Grid,
    settings: SessionSettings,
    lock: SessionLock,
    grid_of: GridOf | None,
) -> OpenedExperiment:
    checkpoint = plan.checkpoint
    corruption = plan.corruption
    notices: list[Notice] = []
    if plan.mode == "resume" and corruption is None and lock.held:
        # The plan read the checkpoint before the lock was ours: read it again.
        with CheckpointStore(plan.experiment_dir) as store:
            if store.exists():
                try:
                    checkpoint = store.load()
                except CheckpointError as exc:
                    corruption = str(exc)
    if corruption is not None and not settings.collect_only:
        report = repair_checkpoint(plan.experiment_dir, grid, settings)
        checkpoint = report.checkpoint
        aside = report.set_aside.name if report.set_aside else "(missing)"
        notices.append(
            Notice(
                f"expresume: the checkpoint was corrupt ({corruption}); it was set aside as "
                f"{aside} and rebuilt from {report.rebuilt_count} result files",
                report.set_aside or plan.experiment_dir / CHECKPOINT_NAME,
            )
        )
    reconciled: dict[RunKey, RunStatus] = {}
    completed: dict[RunKey, str] = {}
    if checkpoint is not None:
        reconciled = unrecorded_results(
            plan.experiment_dir,
            grid,
            checkpoint.completed_runs,
            settings.rerun,
            settings.result_status,
        )
        if reconciled:
            # A copy: the plan's checkpoint stays what was read.
            checkpoint = replace(
                checkpoint, completed_runs={**checkpoint.completed_runs, **reconciled}
            )
        completed = checkpoint.completed_runs
    checked_results = False
    unwhole: set[RunKey] = set()
    if checkpoint is not None and checkpoint.status in LIVE_STATES and lock.held:
        # Nobody else holds the experiment: the session that left "running" died. What it
        # recorded is listed; a power cut may have emptied the files behind the list.
        checked_results = True
        # Every listed run, whatever its status: the list is cleared once checked, and a
        # later --rerun may count an error run as done.
        listed = (key for key in checkpoint.recorded_since_clean_end if key in completed)
        unwhole = unwhole_results(plan.experiment_dir, listed, settings.result_status)
        if unwhole:
            completed = {k: v for k, v in completed.items() if k not in unwhole}
            checkpoint = replace(checkpoint, completed_runs=completed)
    saved_config = plan.experiment_dir / CONFIG_RELPATH
    notices += [
        Notice(f"expresume: --resume uses the saved config; {line}", saved_config)
        for line in plan.ignored
    ]
    skip = frozenset(k for k, s in completed.items() if is_done(s, settings.rerun) and k in grid)
    in_flight: set[RunKey] = set()
    if plan.mode == "resume":
        in_flight = interrupted_runs(plan.experiment_dir, (k for k in grid if k not in skip))
    counted = tally(completed, grid).total
    counts = {"runs": len(grid), "done": len(skip)}
    counts.update({status: counted.counts[status] for status in RUN_STATUSES})
    counts["to_run"] = counts["runs"] - counts["done"]
    grid_told = None
    if plan.grid_change is not None:
        saved = load_saved_config(plan.experiment_dir) or {}
        grid_told = describe_grid_change(
            saved, plan.grid_change, grid_of or (lambda experiment: ())
        )
    return OpenedExperiment(
        checked_results=checked_results,
        unwhole=frozenset(unwhole),
        grid_told=grid_told,
        # One checkpoint in memory: the plan's (read before the lock was ours) is dropped
        # for the one opened here. At 100,000 runs a second copy held 200,000 more objects
        # for the garbage collector to walk on every full collection.
        plan=replace(plan, checkpoint=None),
        grid=grid,
        settings=settings,
        checkpoint=checkpoint,
        skip=skip,
        reconciled=MappingProxyType(reconciled),
        in_flight=frozenset(in_flight),
        notices=tuple(notices),
        lock=lock,
        counts=MappingProxyType(counts),
    )


def begin_recording(opened: OpenedExperiment) -> RunRecorder:
    """Make the experiment dir ready (created, locked, cleaned, its config saved, the
    opening's findings recorded) and mark the experiment running; the recorder of its runs."""
    plan = opened.plan
    fsync = opened.settings.fsync
    make_dirs(plan.experiment_dir, fsync=True)  # the experiment's own entry, once
    opened.lock.acquire()  # a new dir: nobody else can hold it
    remove_stale_temp_files(plan.experiment_dir)
    clear_session_files(plan.experiment_dir)  # an earlier session's pause or stop
    if plan.save_config:
        save_config(plan.experiment_dir, plan.experiment)
    store = CheckpointStore(plan.experiment_dir, fsync=fsync, fsync_journal=False)
    store.create(
        opened.checkpoint
        or Checkpoint(
            experiment_id=plan.spec.experiment_id,
            experiment_dir=str(plan.experiment_dir.resolve()),
            config_hash=plan.config_hash,
        )
    )
    if opened.checked_results:
        store.forget(opened.unwhole)  # loads, and so sizes the journal's threshold
    else:
        store.load()  # sizes the journal's compaction threshold to the snapshot
    change = plan.grid_change
    if change is not None:
        # The history first: a crash before the config is saved tells the change again
        # next time (an entry twice), never a change without its entry.
        store.add_grid_change(change.history_entry(utc_now()))
        saved = load_saved_config(plan.experiment_dir)
        if saved is not None:
            save_config(plan.experiment_dir, saved_with_grid(saved, change))
    for key, status in opened.reconciled.items():
        store.record(key, status)
    store.set_status("running")
    return RunRecorder(store, fsync=fsync)
