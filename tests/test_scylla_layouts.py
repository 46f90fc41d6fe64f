"""ProjectScylla's current layouts: checkpoints of version "3.0" and "3.1" (as its
``E2ECheckpoint`` serializes them) and result files under ``completed/`` and
``in_progress/``, for resume, status and rebuild alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from expresume_testing import AGENT_TEST, checkpoint_json, executions, write_json

EXPERIMENT_ID = "scylla-exp"
CONFIG = {
    "experiment_id": EXPERIMENT_ID,
    "tiers_to_run": ["T0", "T1"],
    "subtests": ["00", "01"],
    "runs_per_subtest": 2,
    "judge_models": ["opus", "sonnet", "haiku"],
}


def _scylla_checkpoint(
    experiment_dir: Path, version: str, completed: dict[str, dict[str, dict[str, str]]]
) -> dict[str, Any]:
    """A checkpoint with the fields and nesting of Scylla's ``E2ECheckpoint.model_dump``:
    ``completed_runs`` is the v2.0 view kept in sync with ``run_states`` (run numbers are
    strings once in JSON); the rest is Scylla's own state machine."""
    run_states = {
        tier: {
            subtest: {
                run: ("worktree_cleaned" if status in ("passed", "failed") else status)
                for run, status in runs.items()
            }
            for subtest, runs in subtests.items()
        }
        for tier, subtests in completed.items()
    }
    return {
        "version": version,
        "experiment_id": EXPERIMENT_ID,
        "experiment_dir": str(experiment_dir),
        "config_hash": "3f2a9c0d1e4b5a6f",
        "experiment_state": "tiers_running",
        "tier_states": {"T0": "subtests_running", "T1": "pending"},
        "subtest_states": {"T0": {"00": "runs_complete", "01": "runs_in_progress"}},
        "run_states": run_states,
        "completed_runs": completed,
        "started_at": "2026-02-01T09:00:00+00:00",
        "last_updated_at": "2026-02-01T10:30:00+00:00",
        "last_heartbeat": "2026-02-01T10:30:05+00:00",
        "status": "running",
        "rate_limit_source": None,
        "rate_limit_until": None,
        "pause_count": 0,
        "pid": 31337,
    }


def _scylla_result(tier: str, subtest: str, run: int, passed: bool) -> dict[str, Any]:
    """A result file as Scylla writes it: no expresume fields, ``judge_passed`` decides."""
    return {
        "run_number": run,
        "tier_id": tier,
        "subtest_id": subtest,
        "judge_passed": passed,
        "judge_score": 0.9 if passed else 0.2,
        "cost_usd": 0.31,
    }


def _experiment_dir(pytester: pytest.Pytester) -> Path:
    experiment_dir = pytester.path / "results" / f"2026-02-01T09-00-00-{EXPERIMENT_ID}"
    write_json(experiment_dir / "config" / "experiment.json", CONFIG)
    pytester.makepyfile(test_agent=AGENT_TEST)
    return experiment_dir


def _result_at(experiment_dir: Path, root: str, tier: str, subtest: str, run: int) -> Path:
    base = experiment_dir / root if root else experiment_dir
    return base / tier / subtest / f"run_{run:02d}" / "run_result.json"


@pytest.mark.parametrize("version", ["3.0", "3.1"])
def test_a_scylla_3_checkpoint_resumes_runs_what_is_left_and_keeps_its_fields(
    pytester: pytest.Pytester, version: str
) -> None:
    experiment_dir = _experiment_dir(pytester)
    completed = {"T0": {"00": {"1": "passed", "2": "failed"}, "01": {"1": "agent_complete"}}}
    original = _scylla_checkpoint(experiment_dir, version, completed)
    write_json(experiment_dir / "checkpoint.json", original, indent=2)
    for run, passed in ((1, True), (2, False)):
        write_json(
            _result_at(experiment_dir, "completed", "T0", "00", run),
            _scylla_result("T0", "00", run, passed),
        )

    status = pytester.runpytest(f"--experiment-dir={experiment_dir}", "--experiment-status")
    status.stdout.fnmatch_lines(["total *8 *1 *1 *0 *0 *6 *50.0%"])

    resumed = pytester.runpytest("--resume", f"--experiment-dir={experiment_dir}")
    resumed.stdout.fnmatch_lines(
        [f"expresume: resuming {EXPERIMENT_ID} at *: 2 of 8 runs done, 6 to run"]
    )
    resumed.assert_outcomes(passed=6)
    # agent_complete is Scylla's "agent done, judge not": not done here, so it ran.
    assert "T0/01/1" in executions(pytester)
    assert not {"T0/00/1", "T0/00/2"} & set(executions(pytester))
    data = checkpoint_json(experiment_dir)
    assert data["version"] == 1  # upgraded, like "2.0"
    for name in ("run_states", "tier_states", "subtest_states", "experiment_state", "pid"):
        assert data[name] == original[name], name
    assert data["completed_runs"]["T0"]["00"] == {"1": "passed", "2": "failed"}
    assert data["completed_runs"]["T0"]["01"]["1"] == "passed"
    assert data["status"] == "completed"


@pytest.mark.parametrize("root", ["completed", "in_progress"])
def test_result_files_under_scylla_dirs_are_reconciled_and_rebuilt(
    pytester: pytest.Pytester, root: str
) -> None:
    experiment_dir = _experiment_dir(pytester)
    write_json(experiment_dir / "checkpoint.json", _scylla_checkpoint(experiment_dir, "3.1", {}))
    write_json(_result_at(experiment_dir, root, "T1", "01", 2), _scylla_result("T1", "01", 2, True))
    # Reconciled on resume: the checkpoint does not list it, its result file says passed.
    resumed = pytester.runpytest(f"--experiment-dir={experiment_dir}", "--resume")
    resumed.assert_outcomes(passed=7)
    assert "T1/01/2" not in executions(pytester)
    assert checkpoint_json(experiment_dir)["completed_runs"]["T1"]["01"]["2"] == "passed"

    rebuilt = pytester.runpytest(f"--experiment-dir={experiment_dir}", "--rebuild-checkpoint")
    assert rebuilt.ret == pytest.ExitCode.OK
    rebuilt.stdout.fnmatch_lines(["  rebuilt completed_runs:  8"])
    assert checkpoint_json(experiment_dir)["completed_runs"]["T1"]["01"]["2"] == "passed"


def test_a_2_0_checkpoint_whose_results_live_under_completed_rebuilds_every_run(
    pytester: pytest.Pytester,
) -> None:
    """The case that rebuilt to 0 of 3 ("original 3, rebuilt 0") and dropped the runs."""
    experiment_dir = _experiment_dir(pytester)
    checkpoint = {
        "version": "2.0",
        "experiment_id": EXPERIMENT_ID,
        "experiment_dir": str(experiment_dir),
        "config_hash": "0123456789abcdef",
        "completed_runs": {"T0": {"00": {"1": "passed", "2": "failed"}, "01": {"1": "passed"}}},
        "status": "interrupted",
        "started_at": "2026-02-01T09:00:00+00:00",
        "last_updated_at": "2026-02-01T10:00:00+00:00",
        "pause_count": 0,
        "pid": 7,
    }
    write_json(experiment_dir / "checkpoint.json", checkpoint)
    for subtest, run, passed in (("00", 1, True), ("00", 2, False), ("01", 1, True)):
        write_json(
            _result_at(experiment_dir, "completed", "T0", subtest, run),
            _scylla_result("T0", subtest, run, passed),
        )
    rebuilt = pytester.runpytest(f"--experiment-dir={experiment_dir}", "--rebuild-checkpoint")
    rebuilt.stdout.fnmatch_lines(
        [
            "  original completed_runs: 3",
            "  rebuilt completed_runs:  3",
            "  difference:              +0",
            "  T0: 3 runs (1 failed, 2 passed)",
        ]
    )
    assert "dropped" not in rebuilt.stdout.str()


def test_a_rebuild_names_each_run_it_drops_and_why(pytester: pytest.Pytester) -> None:
    experiment_dir = _experiment_dir(pytester)
    listed = {"T0": {"00": {"1": "passed", "2": "passed"}, "01": {"1": "failed"}}}
    write_json(
        experiment_dir / "checkpoint.json", _scylla_checkpoint(experiment_dir, "3.1", listed)
    )
    garbled = _result_at(experiment_dir, "completed", "T0", "00", 1)
    garbled.parent.mkdir(parents=True)
    garbled.write_text('{"judge_passed": tr')
    (experiment_dir / "in_progress" / "T0" / "00" / "run_02").mkdir(parents=True)
    rebuilt = pytester.runpytest(f"--experiment-dir={experiment_dir}", "--rebuild-checkpoint")
    rebuilt.stdout.fnmatch_lines(
        [
            "  dropped: T0/00/run 1 was in the checkpoint as 'passed', but its result file "
            "*/completed/T0/00/run_01/run_result.json is not usable: not valid JSON*",
            "  dropped: T0/00/run 2 was in the checkpoint as 'passed', but its run dir "
            "*/in_progress/T0/00/run_02 has no result file*",
            "  dropped: T0/01/run 1 was in the checkpoint as 'failed', but no run dir for it "
            "exists (looked in T0/01/run_01, completed/T0/01/run_01, in_progress/T0/01/run_01)",
        ]
    )
    # Nothing is lost for good: the copy made first still lists them.
    [backup] = experiment_dir.glob("checkpoint.json.bak-*")
    assert json.loads(backup.read_text())["completed_runs"] == listed


def _pid_of_a_process_that_ended() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("alive", [False, True], ids=["runner-died", "runner-alive"])
def test_status_of_a_running_scylla_checkpoint_without_our_session_lock(
    pytester: pytest.Pytester, alive: bool
) -> None:
    # Scylla's own runner leaves no session.lock note: its checkpoint's pid says who ran it.
    experiment_dir = _experiment_dir(pytester)
    checkpoint = _scylla_checkpoint(experiment_dir, "3.1", {})
    checkpoint["pid"] = os.getpid() if alive else _pid_of_a_process_that_ended()
    write_json(experiment_dir / "checkpoint.json", checkpoint)
    assert not (experiment_dir / "session.lock").exists()

    status = pytester.runpytest(f"--experiment-dir={experiment_dir}", "--experiment-status")
    assert status.ret == pytest.ExitCode.OK
    if alive:
        status.stdout.fnmatch_lines(["state: running*"])
        status.stdout.no_fnmatch_line("*session died*")
    else:
        status.stdout.fnmatch_lines(
            [
                f"state: interrupted (its session died: pid {checkpoint['pid']}, host ?, "
                "last update 2026-02-01T10:30:00+00:00)*"
            ]
        )
