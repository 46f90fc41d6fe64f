"""Grow an experiment: a wider (or narrower) grid continues the same experiment dir, the
finished runs stay done, only the new ones run, and the change is said, saved and kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from expresume_testing import (
    checkpoint_json,
    executions,
    experiment_dirs,
    only_experiment_dir,
    statuses,
    write_experiment,
    write_json,
)

from pytest_expresume.config import legacy_config_hash
from pytest_expresume.layout import CONFIG_RELPATH


def _saved_config(experiment_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((experiment_dir / CONFIG_RELPATH).read_text())
    return data


def _first_session(pytester: pytest.Pytester, **overrides: Any) -> Path:
    write_experiment(pytester, **overrides)
    pytester.runpytest().assert_outcomes(passed=8)
    return only_experiment_dir(pytester)


def test_adding_a_tier_runs_only_its_runs_in_the_same_experiment(
    pytester: pytest.Pytester,
) -> None:
    experiment_dir = _first_session(pytester)
    assert len(executions(pytester)) == 8
    write_experiment(pytester, tiers=["T0", "T1", "T2"])
    grown = pytester.runpytest()
    grown.assert_outcomes(passed=4)
    grown.stdout.fnmatch_lines(
        [
            "expresume: resuming demo at *: 8 of 12 runs done, 4 to run",
            "expresume: grid: +T2 (+4 runs)",
        ]
    )
    assert experiment_dirs(pytester) == [experiment_dir]
    assert executions(pytester)[8:] == ["T2/00/1", "T2/00/2", "T2/01/1", "T2/01/2"]
    assert len(statuses(experiment_dir)) == 12
    checkpoint = checkpoint_json(experiment_dir)
    assert checkpoint["status"] == "completed"
    [entry] = checkpoint["grid_history"]
    assert entry["before"]["tiers"] == ["T0", "T1"]
    assert entry["after"]["tiers"] == ["T0", "T1", "T2"]
    assert entry["at"] <= checkpoint["last_updated_at"]
    assert _saved_config(experiment_dir)["tiers"] == ["T0", "T1", "T2"]
    # Said once: the next session has nothing new to tell.
    again = pytester.runpytest()
    assert "grid:" not in again.stdout.str()
    assert len(checkpoint_json(experiment_dir)["grid_history"]) == 1


def test_raising_runs_per_subtest_adds_runs(pytester: pytest.Pytester) -> None:
    experiment_dir = _first_session(pytester)
    write_experiment(pytester, runs_per_subtest=3)
    grown = pytester.runpytest()
    grown.assert_outcomes(passed=4)
    grown.stdout.fnmatch_lines(["expresume: grid: runs_per_subtest 2 -> 3 (+4 runs)"])
    assert sorted(executions(pytester)[8:]) == ["T0/00/3", "T0/01/3", "T1/00/3", "T1/01/3"]
    assert _saved_config(experiment_dir)["runs_per_subtest"] == 3


def test_raising_max_subtests_adds_subtests(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, subtests=["00", "01", "02"], max_subtests=2)
    pytester.runpytest().assert_outcomes(passed=8)
    write_experiment(pytester, subtests=["00", "01", "02"], max_subtests=3)
    grown = pytester.runpytest()
    grown.assert_outcomes(passed=4)
    grown.stdout.fnmatch_lines(["expresume: grid: max_subtests 2 -> 3 (+4 runs)"])
    assert sorted(executions(pytester)[8:]) == ["T0/02/1", "T0/02/2", "T1/02/1", "T1/02/2"]


def test_several_changes_are_told_one_by_one(pytester: pytest.Pytester) -> None:
    _first_session(pytester)
    write_experiment(pytester, tiers=["T0", "T1", "T2"], runs_per_subtest=3)
    grown = pytester.runpytest()
    grown.assert_outcomes(passed=10)  # T2: 2 x 3, and run 3 of T0 and T1: 4
    grown.stdout.fnmatch_lines(
        ["expresume: grid: +T2 (+4 runs), runs_per_subtest 2 -> 3 (+6 runs)"]
    )


def test_a_smaller_grid_keeps_the_runs_outside_it_and_runs_nothing(
    pytester: pytest.Pytester,
) -> None:
    experiment_dir = _first_session(pytester)
    results_before = sorted(experiment_dir.glob("*/*/run_*/run_result.json"))
    write_experiment(pytester, tiers=["T0"])
    shrunk = pytester.runpytest()
    assert shrunk.ret == pytest.ExitCode.OK
    shrunk.stdout.fnmatch_lines(
        [
            "expresume: resuming demo at *: all 4 runs done, nothing to run",
            "expresume: grid: -T1 (-4 runs)",
            "4 recorded runs are outside the grid: kept, not run, not counted",
        ]
    )
    assert len(executions(pytester)) == 8  # nothing ran
    assert sorted(experiment_dir.glob("*/*/run_*/run_result.json")) == results_before
    assert len(statuses(experiment_dir)) == 8  # their entries are kept
    assert checkpoint_json(experiment_dir)["status"] == "completed"
    assert _saved_config(experiment_dir)["tiers"] == ["T0"]
    status = pytester.runpytest("--experiment-status")
    status.stdout.fnmatch_lines(
        ["total * 4 *", "note: 4 recorded runs are outside the grid and not counted"]
    )
    # Widened again: the runs outside come back as done, nothing is paid twice.
    write_experiment(pytester)
    back = pytester.runpytest()
    back.stdout.fnmatch_lines(["expresume: resuming demo at *: all 8 runs done, nothing to run"])
    assert len(executions(pytester)) == 8


def test_resume_uses_the_grid_given_now(pytester: pytest.Pytester) -> None:
    experiment_dir = _first_session(pytester)
    write_experiment(pytester, runs_per_subtest=3, judges=["other"])
    grown = pytester.runpytest("--resume")
    grown.assert_outcomes(passed=4, warnings=1)
    grown.stdout.fnmatch_lines(["expresume: grid: runs_per_subtest 2 -> 3 (+4 runs)"])
    saved = _saved_config(experiment_dir)
    assert saved["runs_per_subtest"] == 3
    assert saved["judges"] == ["opus", "sonnet", "haiku"]  # the saved config still wins


def test_resume_of_a_dir_without_a_given_config_uses_the_saved_grid(
    pytester: pytest.Pytester,
) -> None:
    experiment_dir = _first_session(pytester)
    pytester.path.joinpath("pytest.ini").write_text("[pytest]\n")
    result = pytester.runpytest("--resume", f"--experiment-dir={experiment_dir}")
    assert result.ret == pytest.ExitCode.OK
    assert "grid:" not in result.stdout.str()
    assert "all 8 runs done" in result.stdout.str()


def test_drift_in_a_key_outside_the_grid_is_still_refused(pytester: pytest.Pytester) -> None:
    _first_session(pytester)
    write_experiment(pytester, tiers=["T0", "T1", "T2"], judges=["opus"])
    refused = pytester.runpytest()
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*the experiment config has changed since*", "*judges:*"])
    assert "tiers" not in refused.stderr.str()
    assert len(executions(pytester)) == 8


def test_an_experiment_saved_under_the_old_hash_resumes_and_grows(
    pytester: pytest.Pytester,
) -> None:
    experiment_dir = _first_session(pytester)
    # As experiments made before growth have it: the hash counted the grid keys, and the
    # oldest layout has no saved config, only the checkpoint's hash.
    checkpoint = checkpoint_json(experiment_dir)
    checkpoint["config_hash"] = legacy_config_hash(_saved_config(experiment_dir))
    write_json(experiment_dir / "checkpoint.json", checkpoint)
    (experiment_dir / CONFIG_RELPATH).unlink()
    resumed = pytester.runpytest()
    assert resumed.ret == pytest.ExitCode.OK, resumed.stderr.str()
    assert "all 8 runs done" in resumed.stdout.str()
    assert (experiment_dir / CONFIG_RELPATH).is_file()  # saved now: the grid can grow
    write_experiment(pytester, runs_per_subtest=3)
    grown = pytester.runpytest()
    grown.assert_outcomes(passed=4)
    assert experiment_dirs(pytester) == [experiment_dir]
    assert checkpoint_json(experiment_dir)["config_hash"] == checkpoint["config_hash"]


def test_a_grid_key_may_be_a_runtime_key(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, runtime_keys=["runs_per_subtest"])
    pytester.runpytest().assert_outcomes(passed=8)
    write_experiment(pytester, runtime_keys=["runs_per_subtest"], runs_per_subtest=3)
    pytester.runpytest().assert_outcomes(passed=4)
