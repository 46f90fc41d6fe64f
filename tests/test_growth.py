"""Grow an experiment: a wider (or narrower) grid continues the same experiment dir, the
finished runs stay done, only the new ones run, and the change is said, saved and kept."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
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

from pytest_expresume.config import (
    grid_keys_of,
    legacy_config_hash,
    merged_grid,
    validate,
    with_grid,
)
from pytest_expresume.grid import Grid, build_grid
from pytest_expresume.growth import GridChange, describe_grid_change
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


# -- subtests as a mapping tier -> names (the agent_eval example, ProjectScylla) -----------


def test_a_tier_added_with_its_subtests_entry_and_more_runs_at_once(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester, tiers=["T0"], subtests={"T0": ["00", "01"]}, runs_per_subtest=1)
    pytester.runpytest().assert_outcomes(passed=2)
    experiment_dir = only_experiment_dir(pytester)
    grown_subtests = {"T0": ["00", "01"], "T1": ["00", "01", "02"]}
    write_experiment(pytester, tiers=["T0", "T1"], subtests=grown_subtests, runs_per_subtest=2)
    grown = pytester.runpytest()
    grown.assert_outcomes(passed=8)
    # T1 comes with its entry (3 runs at 1 a subtest), then every subtest gets run 2: 5.
    grown.stdout.fnmatch_lines(
        [
            "expresume: resuming demo at *: 2 of 10 runs done, 8 to run",
            "expresume: grid: +T1 (+3 runs), runs_per_subtest 1 -> 2 (+5 runs)",
        ]
    )
    assert sorted(executions(pytester)[2:]) == [
        "T0/00/2",
        "T0/01/2",
        "T1/00/1",
        "T1/00/2",
        "T1/01/1",
        "T1/01/2",
        "T1/02/1",
        "T1/02/2",
    ]
    assert experiment_dirs(pytester) == [experiment_dir]
    assert _saved_config(experiment_dir)["subtests"] == grown_subtests
    [entry] = checkpoint_json(experiment_dir)["grid_history"]
    assert entry["after"]["subtests"] == grown_subtests


def test_dropping_tiers_of_a_mapping_counts_their_runs(pytester: pytest.Pytester) -> None:
    subtests = {"T0": ["00"], "T1": ["00", "01"], "T2": ["00", "01", "02"]}
    write_experiment(pytester, tiers=["T0", "T1", "T2"], subtests=subtests)
    pytester.runpytest().assert_outcomes(passed=12)
    write_experiment(pytester, tiers=["T1"], subtests={"T1": ["00", "01"]})
    shrunk = pytester.runpytest()
    assert shrunk.ret == pytest.ExitCode.OK
    shrunk.stdout.fnmatch_lines(
        [
            "expresume: resuming demo at *: all 4 runs done, nothing to run",
            "expresume: grid: -T0 -T2 (-8 runs)",
        ]
    )
    assert len(executions(pytester)) == 12


def test_a_tiers_own_subtests_are_told_per_tier(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, subtests={"T0": ["00"], "T1": ["00", "01"]})
    pytester.runpytest().assert_outcomes(passed=6)
    write_experiment(pytester, subtests={"T0": ["00", "01", "02"], "T1": ["00", "01"]})
    grown = pytester.runpytest()
    grown.assert_outcomes(passed=4)
    grown.stdout.fnmatch_lines(["expresume: grid: T0 subtests +01 +02 (+4 runs)"])
    assert sorted(executions(pytester)[6:]) == ["T0/01/1", "T0/01/2", "T0/02/1", "T0/02/2"]


# -- the line itself, told without a session ------------------------------------------------


def _grid_of(experiment: Mapping[str, Any]) -> Grid:
    return build_grid(validate(experiment), lambda tier: ["h0", "h1"] if tier < "T2" else None)


def _told(before: dict[str, Any], given: dict[str, Any]) -> tuple[str, int]:
    """The line for a change, and the real difference of the two grids."""
    saved = {"experiment_id": "x", **before}
    change = GridChange(before=grid_keys_of(saved), after=merged_grid(saved, given))
    after = with_grid(saved, change.after)
    return describe_grid_change(saved, change, _grid_of), len(_grid_of(after)) - len(
        _grid_of(saved)
    )


_MAP = {"T0": ["00"], "T1": ["00", "01"], "T2": ["00", "01", "02"]}


@pytest.mark.parametrize(
    ("before", "given", "line"),
    [
        (
            {"tiers": ["T0"], "subtests": {"T0": ["00", "01"]}},
            {"tiers": ["T0", "T1"], "subtests": {"T0": ["00", "01"], "T1": ["00", "01", "02"]}},
            "+T1 (+3 runs)",
        ),
        (
            {"tiers": ["T0", "T1", "T2"], "subtests": _MAP, "runs_per_subtest": 2},
            {"tiers": ["T1", "T3"], "subtests": {"T1": ["00", "01", "02"], "T3": ["00"]}},
            "+T3 (+2 runs), -T0 -T2 (-8 runs), T1 subtests +02 (+2 runs)",
        ),
        (
            {"tiers": ["T0", "T1"], "subtests": ["00", "01"]},
            {"subtests": {"T0": ["00", "01", "02"], "T1": ["00", "01"]}, "runs_per_subtest": 2},
            "T0 subtests +02 (+1 runs), runs_per_subtest (none) -> 2 (+5 runs)",
        ),
        (
            {"tiers": ["T0", "T1"], "subtests": {"T0": ["00"]}},
            {"tiers": ["T0", "T1", "T2"], "subtests": ["00", "01"]},
            # T1's came from the hook: the config knew none, and the count is the same.
            '+T2 (+2 runs), T0 subtests +01 (+1 runs), T1 subtests (none) -> ["00","01"]',
        ),
        (
            {"tiers": ["T0", "T1"], "subtests": ["00", "01", "02"], "max_subtests": 1},
            {"max_subtests": 3, "runs_per_subtest": 2},
            "max_subtests 1 -> 3 (+4 runs), runs_per_subtest (none) -> 2 (+6 runs)",
        ),
        (
            {"tiers": ["T0"], "subtests": {"T0": [f"{i:02d}" for i in range(3)]}},
            {"subtests": {"T0": [f"{i:02d}" for i in range(20)]}},
            "T0 subtests +03 +04 +05 +06 +07 +08 and 11 more (+17 runs)",
        ),
        # T2 has no subtests from the hook: the step between makes no grid, the whole does.
        ({"tiers": ["T0", "T1"]}, {"tiers": ["T0", "T1", "T2"], "subtests": ["x"]}, None),
    ],
    ids=["add", "add-drop-change", "list-to-map", "map-to-list", "max-runs", "long", "uncounted"],
)
def test_each_change_is_told_and_the_parts_add_up(
    before: dict[str, Any], given: dict[str, Any], line: str | None
) -> None:
    told, delta = _told(before, given)
    if line is not None:
        assert told == line
    counted = [int(n) for n in re.findall(r"\(([-+]\d+) runs\)", told)]
    in_all = re.fullmatch(r".*; ([-+]\d+) runs in all", told)
    assert (int(in_all.group(1)) if in_all else sum(counted)) == delta
    if line is None:
        assert told == f'+T2, subtests (none) -> ["x"]; {delta:+d} runs in all'


# -- subtests from the hook (pytest_expresume_subtests) -------------------------------------

#: A suite that finds its subtests on disk, as ProjectScylla's test directories are.
SUBTESTS_FROM_A_FILE = """
import pathlib

def pytest_expresume_subtests(config, experiment, tier):
    return pathlib.Path(config.rootpath, "subtests.txt").read_text().split()
"""


def test_subtests_from_the_hook_grow_and_shrink_the_same_experiment(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester, subtests=None)  # the config lists none: the hook names them
    pytester.makeconftest(SUBTESTS_FROM_A_FILE)
    subtests = pytester.path / "subtests.txt"
    subtests.write_text("00 01")
    pytester.runpytest().assert_outcomes(passed=8)
    experiment_dir = only_experiment_dir(pytester)

    subtests.write_text("00 01 02")
    grown = pytester.runpytest()
    grown.assert_outcomes(passed=4)
    grown.stdout.fnmatch_lines(["expresume: resuming demo at *: 8 of 12 runs done, 4 to run"])
    assert experiment_dirs(pytester) == [experiment_dir]
    assert sorted(executions(pytester)[8:]) == ["T0/02/1", "T0/02/2", "T1/02/1", "T1/02/2"]
    assert len(statuses(experiment_dir)) == 12
    assert checkpoint_json(experiment_dir)["status"] == "completed"

    subtests.write_text("00")
    shrunk = pytester.runpytest()
    assert shrunk.ret == pytest.ExitCode.OK
    shrunk.stdout.fnmatch_lines(
        [
            "expresume: resuming demo at *: all 4 runs done, nothing to run",
            "8 recorded runs are outside the grid: kept, not run, not counted",
        ]
    )
    assert len(executions(pytester)) == 12  # nothing ran
    assert len(statuses(experiment_dir)) == 12  # the runs outside keep their entries
    assert len(list(experiment_dir.glob("*/*/run_*/run_result.json"))) == 12
    assert checkpoint_json(experiment_dir)["status"] == "completed"
    status = pytester.runpytest("--experiment-status")
    status.stdout.fnmatch_lines(
        ["total * 4 *", "note: 8 recorded runs are outside the grid and not counted"]
    )
