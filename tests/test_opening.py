"""Opening an experiment, counting statuses, dir names and the xdist snapshot: pure units."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_expresume.config import ConfigError, config_hash, validate
from pytest_expresume.grid import Grid, RunKey, build_grid
from pytest_expresume.layout import (
    CHECKPOINT_NAME,
    SESSION_LOCK_NAME,
    experiment_dir_name,
    parse_experiment_dir_name,
    result_path,
    save_config,
)
from pytest_expresume.opening import SessionSettings, open_experiment
from pytest_expresume.planning import PlanRequest, SessionPlan, plan_session
from pytest_expresume.session_lock import SessionLock
from pytest_expresume.snapshot import ExperimentSnapshot
from pytest_expresume.statuses import RUN_STATUSES, grid_complete, is_done, tally
from pytest_expresume.store import Checkpoint, CheckpointStore

NOW = datetime(2026, 1, 20, 6, 50, 26, tzinfo=timezone.utc)
CONFIG: dict[str, Any] = {
    "experiment_id": "test-001",
    "tiers": ["T0", "T1"],
    "subtests": ["00", "01"],
    "runs_per_subtest": 2,
    "judges": ["opus", "sonnet", "haiku"],
}


def _grid(config: dict[str, Any]) -> Grid:
    return build_grid(validate(config), lambda tier: None)


def _existing(root: Path, runs: dict[RunKey, str]) -> Path:
    directory = root / experiment_dir_name(NOW - timedelta(days=1), "test-001")
    directory.mkdir(parents=True)
    save_config(directory, CONFIG)
    with CheckpointStore(directory, fsync=False) as store:
        store.create(
            Checkpoint("test-001", str(directory), config_hash(CONFIG), completed_runs=runs)
        )
    return directory


def _plan(root: Path) -> SessionPlan:
    return plan_session(PlanRequest(given=dict(CONFIG), results_root=root), NOW)


def _write_result(directory: Path, key: RunKey, status: str) -> None:
    path = result_path(directory, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{{"expresume": {{"status": "{status}"}}}}')


def test_a_resume_holds_the_session_lock_and_a_second_open_is_refused(tmp_path: Path) -> None:
    _existing(tmp_path, {RunKey("T0", "00", 1): "passed"})
    opened = open_experiment(_plan(tmp_path), _grid(CONFIG), SessionSettings())
    try:
        assert opened.lock.held
        with pytest.raises(ConfigError, match="in use by another pytest session"):
            open_experiment(_plan(tmp_path), _grid(CONFIG), SessionSettings())
    finally:
        opened.lock.release()
    again = open_experiment(_plan(tmp_path), _grid(CONFIG), SessionSettings())
    again.lock.release()


def test_skip_and_counts_leave_out_rerun_statuses_and_runs_outside_the_grid(
    tmp_path: Path,
) -> None:
    runs = {
        RunKey("T0", "00", 1): "passed",
        RunKey("T0", "00", 2): "failed",
        RunKey("T0", "01", 1): "error",
        RunKey("T9", "00", 1): "passed",  # outside the grid
    }
    _existing(tmp_path, runs)
    opened = open_experiment(_plan(tmp_path), _grid(CONFIG), SessionSettings())
    opened.lock.release()
    assert opened.skip == {RunKey("T0", "00", 1), RunKey("T0", "00", 2)}
    assert dict(opened.counts) == {
        "runs": 8,
        "done": 2,
        "passed": 1,
        "failed": 1,
        "error": 1,
        "skipped": 0,
        "to_run": 6,
    }
    failed_too = SessionSettings(rerun=frozenset({"error", "failed"}))
    opened = open_experiment(_plan(tmp_path), _grid(CONFIG), failed_too)
    opened.lock.release()
    assert opened.skip == {RunKey("T0", "00", 1)}


def test_reconciled_runs_are_done_and_the_plans_checkpoint_is_left_as_read(
    tmp_path: Path,
) -> None:
    directory = _existing(tmp_path, {})
    _write_result(directory, RunKey("T1", "01", 2), "passed")
    plan = _plan(tmp_path)
    opened = open_experiment(plan, _grid(CONFIG), SessionSettings(collect_only=True))
    assert dict(opened.reconciled) == {RunKey("T1", "01", 2): "passed"}
    assert RunKey("T1", "01", 2) in opened.skip
    assert opened.checkpoint is not None
    assert opened.checkpoint.completed_runs == {RunKey("T1", "01", 2): "passed"}
    assert plan.checkpoint is not None
    assert plan.checkpoint.completed_runs == {}  # frozen plan, untouched value
    assert not opened.lock.held  # --collect-only locks nothing


def test_a_corrupt_checkpoint_is_repaired_once_with_one_notice_at_the_copy(
    tmp_path: Path,
) -> None:
    directory = _existing(tmp_path, {})
    _write_result(directory, RunKey("T0", "00", 1), "failed")
    (directory / CHECKPOINT_NAME).write_bytes(b'{"version": 1, "compl')

    looked = open_experiment(_plan(tmp_path), _grid(CONFIG), SessionSettings(collect_only=True))
    assert looked.notices == ()  # --collect-only writes nothing, repairs nothing
    assert (directory / CHECKPOINT_NAME).read_bytes() == b'{"version": 1, "compl'

    opened = open_experiment(_plan(tmp_path), _grid(CONFIG), SessionSettings())
    opened.lock.release()
    (notice,) = opened.notices
    assert notice.path.name.startswith("checkpoint.json.corrupt-")
    assert notice.path.read_bytes() == b'{"version": 1, "compl'
    assert "rebuilt from 1 result files" in notice.text
    assert opened.skip == {RunKey("T0", "00", 1)}


def test_a_failure_while_opening_releases_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _existing(tmp_path, {})

    def broken(*args: object, **kwargs: object) -> dict[RunKey, str]:
        raise OSError("disk gone")

    monkeypatch.setattr("pytest_expresume.opening.unrecorded_results", broken)
    with pytest.raises(OSError, match="disk gone"):
        open_experiment(_plan(tmp_path), _grid(CONFIG), SessionSettings())
    probe = SessionLock(directory)
    probe.acquire()  # free again
    probe.release()
    assert (directory / SESSION_LOCK_NAME).exists()


names = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,6}", fullmatch=True)
run_keys = st.builds(RunKey, st.sampled_from(["T0", "T1", "T2"]), names, st.integers(1, 4))
completed_runs = st.dictionaries(run_keys, st.sampled_from(RUN_STATUSES), max_size=30)


@given(completed=completed_runs, subtests=st.lists(names, min_size=1, max_size=3, unique=True))
def test_tally_counts_every_recorded_run_once(
    completed: dict[RunKey, str], subtests: list[str]
) -> None:
    grid = Grid({"T0": tuple(subtests), "T1": tuple(subtests)}, 2)
    over_grid = tally(completed, grid)
    assert over_grid.total.runs == len(grid)
    assert sum(t.runs or 0 for t in over_grid.tiers.values()) == len(grid)
    in_grid = {k: s for k, s in completed.items() if k in grid}
    assert over_grid.total.recorded == len(in_grid)
    assert over_grid.outside == len(completed) - len(in_grid)
    for status in RUN_STATUSES:
        assert over_grid.total.counts[status] == sum(s == status for s in in_grid.values())
        assert (
            sum(t.counts[status] for t in over_grid.tiers.values())
            == (over_grid.total.counts[status])
        )
    without_grid = tally(completed)
    assert without_grid.total.recorded == len(completed)
    assert without_grid.total.runs is None
    rerun = frozenset({"error"})
    assert grid_complete(completed, grid, rerun) == (over_grid.total.done(rerun) == len(grid))
    assert over_grid.total.done(rerun) == sum(is_done(s, rerun) for s in in_grid.values())


@given(
    moment=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2999, 1, 1),
        timezones=st.just(timezone.utc),
    ),
    experiment_id=st.from_regex(r"[A-Za-z0-9._-]+", fullmatch=True),
)
def test_experiment_dir_names_parse_back(moment: datetime, experiment_id: str) -> None:
    name = experiment_dir_name(moment, experiment_id)
    started, parsed_id = parse_experiment_dir_name(name) or ("", "")
    assert parsed_id == experiment_id
    assert started == moment.replace(microsecond=0).isoformat()


def test_other_dir_names_do_not_parse() -> None:
    assert parse_experiment_dir_name("results") is None
    assert parse_experiment_dir_name("2026-01-20-test-001") is None


def test_the_snapshot_crosses_to_a_worker_unchanged(tmp_path: Path) -> None:
    directory = _existing(tmp_path, {RunKey("T1", "00", 2): "skipped"})
    opened = open_experiment(_plan(tmp_path), _grid(CONFIG), SessionSettings())
    opened.lock.release()
    snapshot = ExperimentSnapshot.of(opened)
    crossed = ExperimentSnapshot.from_handoff(snapshot.to_handoff(), writes_results=False)
    assert crossed.experiment_dir == directory.resolve()
    assert crossed.experiment == CONFIG
    assert list(crossed.grid) == list(snapshot.grid)
    assert crossed.skip == {RunKey("T1", "00", 2)}
    assert crossed.counts == snapshot.counts
    assert crossed.config["judges"] == ("opus", "sonnet", "haiku")
    assert crossed.fsync == snapshot.fsync
    assert not crossed.writes_results
