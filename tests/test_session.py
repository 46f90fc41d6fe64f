"""The user path: a grid of items, a result file per run, a checkpoint, and resume."""

from __future__ import annotations

import json

import pytest
from expresume_testing import (
    checkpoint_json,
    executions,
    only_experiment_dir,
    statuses,
    tree_digest,
    write_experiment,
)


def test_grid_items_result_files_and_checkpoint(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(
        [
            "expresume: starting demo at results/*-demo: 8 runs to run",
            "test_agent.py::test_agent[[]T0-00-run_01[]] PASSED*",
            "test_agent.py::test_agent[[]T1-01-run_02[]] PASSED*",
        ]
    )
    # Config order: tiers, then subtests, then runs.
    ids = [line.split("[")[1].split("]")[0] for line in result.outlines if " PASSED" in line]
    assert ids == [f"{t}-{s}-run_0{r}" for t in ("T0", "T1") for s in ("00", "01") for r in (1, 2)]

    experiment_dir = only_experiment_dir(pytester)
    assert experiment_dir.name.endswith("-demo")
    saved = json.loads((experiment_dir / "config" / "experiment.json").read_text())
    assert saved["judges"] == ["opus", "sonnet", "haiku"]
    assert saved["thinking_mode"] == "none"

    result_file = json.loads(
        (experiment_dir / "T1" / "01" / "run_02" / "run_result.json").read_text()
    )
    assert result_file["score"] == 20
    assert result_file["judges_seen"] == ["opus", "sonnet", "haiku"]
    own = result_file["expresume"]
    assert own["status"] == "passed"
    assert (own["tier"], own["subtest"], own["run"]) == ("T1", "01", 2)
    assert own["nodeid"] == "test_agent.py::test_agent[T1-01-run_02]"
    assert own["duration_seconds"] >= 0
    assert own["finished_at"].endswith("+00:00")
    assert "message" not in own

    checkpoint = checkpoint_json(experiment_dir)
    assert checkpoint["version"] == 1
    assert checkpoint["experiment_id"] == "demo"
    assert checkpoint["experiment_dir"] == str(experiment_dir.resolve())
    assert checkpoint["config_hash"].startswith("sha256:")
    assert checkpoint["status"] == "completed"
    assert checkpoint["completed_runs"]["T0"]["00"] == {"1": "passed", "2": "passed"}
    assert len(statuses(experiment_dir)) == 8


def test_resume_runs_only_the_rest(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    first = pytester.runpytest("-k", "T0")
    first.assert_outcomes(passed=4, deselected=4)
    experiment_dir = only_experiment_dir(pytester)
    assert checkpoint_json(experiment_dir)["status"] == "interrupted"

    second = pytester.runpytest("-v")
    second.assert_outcomes(passed=4, deselected=4)
    second.stdout.fnmatch_lines(
        [
            f"expresume: resuming demo at results/{experiment_dir.name}: "
            "4 of 8 runs done, 4 to run",
            "*test_agent[[]T1-00-run_01[]] PASSED*",
        ]
    )
    assert "T0-00-run_01" not in second.stdout.str()
    assert only_experiment_dir(pytester) == experiment_dir
    assert sorted(executions(pytester)) == sorted(
        f"{t}/{s}/{r}" for t in ("T0", "T1") for s in ("00", "01") for r in (1, 2)
    )
    assert checkpoint_json(experiment_dir)["status"] == "completed"


def test_nothing_left_to_run_is_a_success(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    pytester.runpytest().assert_outcomes(passed=8)
    again = pytester.runpytest()
    assert again.ret == pytest.ExitCode.OK
    again.assert_outcomes(deselected=8)
    again.stdout.fnmatch_lines(
        [
            "expresume: resuming demo at results/*: all 8 runs done, nothing to run",
            "expresume: all 8 runs are done; nothing to run",
        ]
    )
    assert len(executions(pytester)) == 8


def test_interrupted_session_keeps_recorded_runs(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, behaviour={"T0-01-1": "interrupt"})
    first = pytester.runpytest_inprocess(no_reraise_ctrlc=True)
    assert first.ret == pytest.ExitCode.INTERRUPTED
    experiment_dir = only_experiment_dir(pytester)
    assert statuses(experiment_dir) == {"T0/00/1": "passed", "T0/00/2": "passed"}
    assert checkpoint_json(experiment_dir)["status"] == "interrupted"
    # The run in flight is not recorded, but its run dir stays.
    assert (experiment_dir / "T0" / "01" / "run_01").is_dir()
    assert not (experiment_dir / "T0" / "01" / "run_01" / "run_result.json").exists()


def test_resume_after_interrupt_runs_the_rest_once(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, behaviour={"T0-01-1": "interrupt"})
    pytester.runpytest_inprocess(no_reraise_ctrlc=True)
    # The config is authoritative; finishing needs --resume to drop the interrupt.
    write_experiment(pytester)
    refused = pytester.runpytest()
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    finished = pytester.runpytest_inprocess(
        "--resume", "--experiment-set", "behaviour={}", no_reraise_ctrlc=True
    )
    # The saved config still says "interrupt" for T0-01-1, so it interrupts again; it was
    # in flight when the first session died, so every other run ran before it.
    assert finished.ret == pytest.ExitCode.INTERRUPTED
    experiment_dir = only_experiment_dir(pytester)
    assert statuses(experiment_dir) == {
        f"{t}/{s}/{r}": "passed"
        for t in ("T0", "T1")
        for s in ("00", "01")
        for r in (1, 2)
        if (t, s, r) != ("T0", "01", 1)
    }
    # The earlier attempt of the interrupted run was kept aside, not destroyed.
    assert (experiment_dir / "T0" / "01" / ".attempts" / "run_01-1").is_dir()


def test_collect_only_writes_nothing(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    before = tree_digest(pytester.path)
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["test_agent.py::test_agent[[]T0-00-run_01[]]", "8 tests collected*"]
    )
    assert tree_digest(pytester.path) == before


def test_experiment_fixture_reports_counts(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    pytester.runpytest("-k", "T0-00")
    pytester.makepyfile(
        test_zz_info="""
        def test_info(experiment):
            assert experiment.config["experiment_id"] == "demo"
            assert experiment.dir.name.endswith("-demo")
            assert dict(experiment.counts) == {
                "runs": 8, "done": 2, "passed": 2, "failed": 0, "error": 0,
                "skipped": 0, "to_run": 6,
            }
        """
    )
    result = pytester.runpytest("test_zz_info.py")
    result.assert_outcomes(passed=1)


def test_config_given_to_tests_is_read_only(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, runs_per_subtest=1, tiers=["T0"], subtests=["00"])
    pytester.makepyfile(
        test_agent="""
        import pytest

        def test_agent(experiment_run):
            with pytest.raises(TypeError):
                experiment_run.config["judges"] = []
            assert experiment_run.config["judges"] == ("opus", "sonnet", "haiku")
            assert experiment_run.dir.is_dir()
            assert experiment_run.run == 1
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_tests_without_the_experiment_run_as_if_the_plugin_were_not_there(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("x", [1, 2])
        def test_plain(x):
            assert x
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert "expresume:" not in result.stdout.str()
    assert not (pytester.path / "results").exists()
    disabled = pytester.runpytest("-p", "no:expresume")
    disabled.assert_outcomes(passed=2)


def test_experiment_tests_beside_plain_tests(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=1)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    pytester.runpytest().assert_outcomes(passed=2)
    again = pytester.runpytest()
    again.assert_outcomes(passed=1, deselected=1)
