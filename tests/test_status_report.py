"""--experiment-status: counts per tier, pending, pass rate and totals."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import portalocker
import pytest
from expresume_testing import snapshot_tree, write_result

from pytest_expresume.grid import Grid, RunKey
from pytest_expresume.layout import SESSION_LOCK_NAME, save_config
from pytest_expresume.session_lock import SessionLock, describe_holder
from pytest_expresume.status_report import (
    TierCounts,
    experiment_status,
    read_experiment_status,
)
from pytest_expresume.store import CHECKPOINT_NAME, LOCK_NAME, Checkpoint, CheckpointStore

COLUMNS = ["runs", "passed", "failed", "error", "skipped", "pending", "pass rate"]


def checkpoint(completed: dict[RunKey, str], status: str = "running") -> Checkpoint:
    return Checkpoint(
        experiment_id="test-001",
        experiment_dir="/somewhere",
        config_hash="sha256:" + "ef" * 32,
        completed_runs=dict(completed),
        status=status,
        started_at="2026-01-20T06:50:26+00:00",
        last_updated_at="2026-01-20T07:17:17+00:00",
    )


def table(lines: list[str]) -> dict[str, dict[str, str]]:
    """The rows of the printed table: name -> column -> cell."""
    header = lines[1].split()
    assert header[0] == "tier"
    assert " ".join(header[1:]) == " ".join(COLUMNS)
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        if line.startswith("state:"):
            break
        name, *cells = line.split()
        assert len(cells) == len(COLUMNS), line
        rows[name] = dict(zip(COLUMNS, cells, strict=True))
    return rows


def row(runs: str, p: int, f: int, e: int, s: int, pending: str, rate: str) -> dict[str, str]:
    return dict(zip(COLUMNS, [runs, str(p), str(f), str(e), str(s), pending, rate], strict=True))


GRID = Grid({"T0": ("00", "01"), "T1": ("00",), "T2": ("00", "01", "02")}, 2)
COMPLETED = {
    RunKey("T0", "00", 1): "passed",
    RunKey("T0", "00", 2): "passed",
    RunKey("T0", "01", 1): "failed",
    RunKey("T1", "00", 1): "error",
    RunKey("T1", "00", 2): "skipped",
    RunKey("T2", "02", 2): "failed",
    RunKey("T9", "00", 1): "passed",  # not in the grid: not counted when it is known
    RunKey("T0", "00", 3): "passed",  # a run number beyond the grid
}


def test_counts_per_tier_over_the_grid() -> None:
    shown = experiment_status(Path("/e"), checkpoint(COMPLETED), GRID)

    assert list(shown.tiers) == ["T0", "T1", "T2"]
    t0, t1, t2 = shown.tiers["T0"], shown.tiers["T1"], shown.tiers["T2"]
    assert (t0.runs, t0.recorded, t0.pending) == (4, 3, 1)
    assert t0.counts == {"passed": 2, "failed": 1, "error": 0, "skipped": 0}
    assert t0.pass_rate == pytest.approx(2 / 3)
    assert (t1.runs, t1.recorded, t1.pending, t1.pass_rate) == (2, 2, 0, None)
    assert t1.counts == {"passed": 0, "failed": 0, "error": 1, "skipped": 1}
    assert (t2.runs, t2.recorded, t2.pending, t2.pass_rate) == (6, 1, 5, 0.0)
    total = shown.total
    assert (total.runs, total.recorded, total.pending) == (12, 6, 6)
    assert total.counts == {"passed": 2, "failed": 2, "error": 1, "skipped": 1}
    assert total.pass_rate == pytest.approx(0.5)


def test_the_table_over_the_grid() -> None:
    lines = experiment_status(Path("/e"), checkpoint(COMPLETED, "interrupted"), GRID).lines()

    assert lines[0] == "expresume: test-001 at /e"
    assert table(lines) == {
        "T0": row("4", 2, 1, 0, 0, "1", "66.7%"),
        "T1": row("2", 0, 0, 1, 1, "0", "-"),
        "T2": row("6", 0, 1, 0, 0, "5", "0.0%"),
        "total": row("12", 2, 2, 1, 1, "6", "50.0%"),
    }
    assert lines[-2] == "state: interrupted, last update 2026-01-20T07:17:17+00:00"
    assert lines[-1] == "note: 2 recorded runs are outside the grid and not counted"


def test_nothing_recorded_yet() -> None:
    shown = experiment_status(Path("/e"), checkpoint({}), GRID)
    assert table(shown.lines()) == {
        "T0": row("4", 0, 0, 0, 0, "4", "-"),
        "T1": row("2", 0, 0, 0, 0, "2", "-"),
        "T2": row("6", 0, 0, 0, 0, "6", "-"),
        "total": row("12", 0, 0, 0, 0, "12", "-"),
    }


def test_without_a_grid_runs_and_pending_are_unknown() -> None:
    shown = experiment_status(Path("/e"), checkpoint(COMPLETED), None)

    assert list(shown.tiers) == ["T0", "T1", "T2", "T9"]
    assert shown.tiers["T0"].runs is None
    assert shown.tiers["T0"].pending is None
    assert shown.tiers["T0"].counts["passed"] == 3
    assert shown.total.runs is None
    assert shown.total.pending is None
    assert shown.total.recorded == len(COMPLETED)
    assert table(shown.lines()) == {
        "T0": row("?", 3, 1, 0, 0, "?", "75.0%"),
        "T1": row("?", 0, 0, 1, 1, "?", "-"),
        "T2": row("?", 0, 1, 0, 0, "?", "0.0%"),
        "T9": row("?", 1, 0, 0, 0, "?", "100.0%"),
        "total": row("?", 4, 2, 1, 1, "?", "66.7%"),
    }


@pytest.mark.parametrize(
    ("counts", "rate"),
    [
        ({"passed": 1}, 1.0),
        ({"failed": 3}, 0.0),
        ({"passed": 1, "failed": 3, "error": 50, "skipped": 50}, 0.25),
        ({"error": 2, "skipped": 1}, None),
        ({}, None),
    ],
)
def test_pass_rate_is_passed_over_verdicts(counts: dict[str, int], rate: float | None) -> None:
    tier = TierCounts(runs=None)
    tier.counts.update(counts)
    assert tier.pass_rate == rate


# -- read_experiment_status: from an experiment dir --


def write_checkpoint(exp: Path, completed: dict[RunKey, str], status: str = "running") -> None:
    with CheckpointStore(exp, fsync=False) as store:
        store.create(checkpoint(completed, status))


CONFIG = {
    "experiment_id": "test-001",
    "tiers": ["T1", "T0"],
    "subtests": ["00", "01", "02"],
    "max_subtests": 2,
    "runs_per_subtest": 3,
    "judges": ["opus", "sonnet", "haiku"],
}


def test_read_status_takes_the_grid_from_the_saved_config(exp: Path) -> None:
    save_config(exp, CONFIG)
    write_checkpoint(
        exp,
        {
            RunKey("T0", "00", 1): "passed",
            RunKey("T0", "01", 3): "failed",
            RunKey("T0", "02", 1): "passed",  # cut by max_subtests
            RunKey("T1", "00", 2): "skipped",
        },
    )
    with CheckpointStore(exp, fsync=False) as store:
        store.record(RunKey("T1", "01", 1), "passed", at="2026-01-20T08:00:00+00:00")

    shown = read_experiment_status(exp)

    assert shown.notes == ["note: 1 recorded runs are outside the grid and not counted"]
    assert table(shown.lines()) == {
        "T1": row("6", 1, 0, 0, 1, "4", "100.0%"),
        "T0": row("6", 1, 1, 0, 0, "4", "50.0%"),
        "total": row("12", 2, 1, 0, 1, "8", "66.7%"),
    }
    # 'running', and nobody holds the session lock: whoever ran it died, leaving no note.
    assert shown.lines()[-2] == (
        "state: interrupted (its session died: pid ?, host ?, "
        "last update 2026-01-20T08:00:00+00:00)"
    )


@pytest.mark.parametrize(
    "config",
    [
        None,
        {"experiment_id": "test-001", "tiers": ["T0", "T1"]},  # subtests from a hook
        "not json {",
        [1, 2],
    ],
    ids=["no config", "no subtests", "garbled", "a list"],
)
def test_read_status_without_a_usable_grid_counts_what_is_recorded(exp: Path, config: Any) -> None:
    if isinstance(config, dict):
        save_config(exp, config)
    elif config is not None:
        (exp / "config").mkdir()
        (exp / "config" / "experiment.json").write_text(
            config if isinstance(config, str) else json.dumps(config)
        )
    write_checkpoint(exp, {RunKey("T0", "00", 1): "passed", RunKey("T1", "00", 1): "failed"})

    shown = read_experiment_status(exp)

    assert shown.total.runs is None
    assert table(shown.lines()) == {
        "T0": row("?", 1, 0, 0, 0, "?", "100.0%"),
        "T1": row("?", 0, 1, 0, 0, "?", "0.0%"),
        "total": row("?", 1, 1, 0, 0, "?", "50.0%"),
    }


def test_read_status_of_a_corrupt_checkpoint_counts_the_files_and_reads_only(exp: Path) -> None:
    save_config(exp, {**CONFIG, "tiers": ["T0"], "max_subtests": 1})
    write_result(exp, RunKey("T0", "00", 1), {"expresume": {"status": "error"}})
    write_result(exp, RunKey("T0", "00", 2), {"judge_passed": True})
    write_result(exp, RunKey("T0", "00", 3), ["not", "an", "object"])
    (exp / CHECKPOINT_NAME).write_bytes(b'{"version": 1, "experiment_id": "te')
    before = snapshot_tree(exp)

    shown = read_experiment_status(exp)

    assert snapshot_tree(exp) == before
    assert not (exp / LOCK_NAME).exists()
    assert len(shown.notes) == 1
    assert "cannot be read" in shown.notes[0]
    assert shown.notes[0] in shown.lines()
    assert table(shown.lines()) == {
        "T0": row("3", 1, 0, 1, 0, "1", "100.0%"),
        "total": row("3", 1, 0, 1, 0, "1", "100.0%"),
    }


def test_a_running_experiment_held_by_a_live_session_is_running(exp: Path) -> None:
    write_checkpoint(exp, {RunKey("T0", "00", 1): "passed"})
    lock = SessionLock(exp)
    lock.acquire()
    try:
        holder = dict(lock.holder)
        shown = read_experiment_status(exp)
    finally:
        lock.release()
    assert holder["pid"] == os.getpid()
    assert shown.state == "running"
    assert shown.lines()[-2].startswith("state: running, last update ")
    assert shown.notes == [f"a session is running now: {describe_holder(holder)}"]


def test_a_running_experiment_whose_session_died_is_interrupted_with_its_note(
    exp: Path,
) -> None:
    write_checkpoint(exp, {RunKey("T0", "00", 1): "passed"})
    # What a session killed by kill -9 leaves: its note, under a lock nobody holds.
    holder = {"pid": 4242, "host": "gpu-07", "since": "2026-01-20T06:50:26+00:00"}
    (exp / SESSION_LOCK_NAME).write_bytes(json.dumps(holder).encode())
    before = snapshot_tree(exp)
    shown = read_experiment_status(exp)
    assert shown.state == (
        "interrupted (its session died: pid 4242, host gpu-07, last update "
        f"{shown.checkpoint.last_updated_at})"
    )
    assert shown.lines()[-1 - len(shown.notes)] == f"state: {shown.state}"
    assert snapshot_tree(exp) == before  # the status reads only


def test_an_experiment_a_session_closed_keeps_its_state(exp: Path) -> None:
    write_checkpoint(exp, {RunKey("T0", "00", 1): "passed"}, status="interrupted")
    (exp / SESSION_LOCK_NAME).write_bytes(b"")  # a session that ended cleared its note
    shown = read_experiment_status(exp)
    assert shown.state == "interrupted"
    assert "died" not in "\n".join(shown.lines())


def test_a_status_check_never_makes_a_starting_session_busy(exp: Path) -> None:
    """The status tests the lock shared for an instant; a session starting then waits."""
    write_checkpoint(exp, {})
    lock_path = exp / SESSION_LOCK_NAME
    lock_path.write_bytes(b"")
    with open(lock_path, "rb") as probe:
        portalocker.lock(probe, portalocker.LOCK_SH | portalocker.LOCK_NB)
        timer = threading.Timer(0.1, portalocker.unlock, args=(probe,))
        timer.start()
        session = SessionLock(exp)
        try:
            session.acquire()  # raises ExperimentBusy if it gave up at once
            assert session.held
        finally:
            timer.join()
            session.release()
