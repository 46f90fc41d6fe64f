"""The saved config is authoritative: refusals, --resume, --fresh, runtime keys, bad input."""

from __future__ import annotations

import json

import pytest
from expresume_testing import (
    XDIST,
    executions,
    experiment_dirs,
    only_experiment_dir,
    statuses,
    tree_digest,
    write_experiment,
)

THREE_JUDGES = 'judges=["opus","sonnet","haiku"]'
TWO_JUDGES = 'judges=["opus","sonnet"]'


def test_field_case_changed_judges_refused_then_resumed_with_saved_config(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester, judges=None)
    first = pytester.runpytest("--experiment-set", THREE_JUDGES, "-k", "T0")
    first.assert_outcomes(passed=4, deselected=4)
    experiment_dir = only_experiment_dir(pytester)

    before = tree_digest(pytester.path)
    refused = pytester.runpytest("--experiment-set", TWO_JUDGES, "-p", "no:cacheprovider")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(
        [
            "ERROR: expresume: the experiment config has changed since *:",
            '  judges: ["opus","sonnet","haiku"] -> ["opus","sonnet"]',
            "use --resume to continue with the saved config, or --fresh to start a new experiment",
        ]
    )
    assert "Traceback" not in refused.stderr.str() + refused.stdout.str()
    assert tree_digest(pytester.path) == before

    resumed = pytester.runpytest("--resume", "--experiment-set", TWO_JUDGES)
    resumed.assert_outcomes(passed=4, deselected=4, warnings=1)
    # Said once, as a warning located at the saved config that wins (not at our code).
    resumed.stdout.fnmatch_lines(
        [
            "expresume: resuming demo at *: 4 of 8 runs done, 4 to run",
            "*warnings summary*",
            "results/*-demo/config/experiment.json:0",
            "*ExpresumeWarning: expresume: --resume uses the saved config; "
            "judges: given * ignored, the saved * is used",
        ]
    )
    line = 'judges: given ["opus","sonnet"] ignored, the saved ["opus","sonnet","haiku"] is used'
    assert resumed.stdout.str().count(line) == 1
    assert "pytest_expresume" not in resumed.stdout.str()
    assert only_experiment_dir(pytester) == experiment_dir
    for tier in ("T0", "T1"):
        result_file = experiment_dir / tier / "00" / "run_01" / "run_result.json"
        assert json.loads(result_file.read_text())["judges_seen"] == ["opus", "sonnet", "haiku"]
    saved = json.loads((experiment_dir / "config" / "experiment.json").read_text())
    assert saved["judges"] == ["opus", "sonnet", "haiku"]


def test_long_values_are_summarised_in_the_refusal(pytester: pytest.Pytester) -> None:
    judges = [f"judge-model-number-{i}" for i in range(3)]
    write_experiment(pytester, judge_models=judges, tiers=["T0"], runs_per_subtest=1)
    pytester.runpytest().assert_outcomes(passed=2)
    write_experiment(pytester, judge_models=judges[:2], tiers=["T0"], runs_per_subtest=1)
    refused = pytester.runpytest()
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["  judge_models: [[]3 items[]] -> [[]2 items[]]"])


def test_thinking_mode_reaches_the_saved_config_and_its_change_is_named(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester, runs_per_subtest=1)
    pytester.runpytest().assert_outcomes(passed=4)
    refused = pytester.runpytest("--experiment-set", "thinking_mode=extended")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(['  thinking_mode: "none" -> "extended"'])


def test_fresh_starts_a_new_dir_and_leaves_the_old_one_untouched(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester, behaviour={"T0-00-1": "fail"})
    pytester.runpytest("-k", "T0")
    old_dir = only_experiment_dir(pytester)
    old_files = tree_digest(old_dir)

    result = pytester.runpytest("--fresh")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["expresume: starting demo at results/*-demo: 8 runs to run"])
    dirs = experiment_dirs(pytester)
    assert len(dirs) == 2
    assert dirs[0] == old_dir
    assert tree_digest(old_dir) == old_files
    assert len(statuses(dirs[1])) == 8
    # A plain run now resumes the newest experiment.
    again = pytester.runpytest()
    again.stdout.fnmatch_lines([f"expresume: resuming demo at results/{dirs[1].name}: *"])


def test_failed_stays_done_error_runs_again_and_rerun_option(pytester: pytest.Pytester) -> None:
    write_experiment(
        pytester,
        tiers=["T0"],
        subtests=["00"],
        runs_per_subtest=3,
        behaviour={"T0-00-1": "fail", "T0-00-2": "error"},
    )
    first = pytester.runpytest()
    first.assert_outcomes(passed=1, failed=2)
    experiment_dir = only_experiment_dir(pytester)
    assert statuses(experiment_dir) == {
        "T0/00/1": "failed",
        "T0/00/2": "error",
        "T0/00/3": "passed",
    }
    error_file = json.loads((experiment_dir / "T0/00/run_02/run_result.json").read_text())
    assert error_file["expresume"]["message"] == "RuntimeError: rate limited"
    failed_file = json.loads((experiment_dir / "T0/00/run_01/run_result.json").read_text())
    assert failed_file["expresume"]["message"].startswith("AssertionError: judges said no")

    second = pytester.runpytest("-v")
    second.assert_outcomes(failed=1, deselected=2)
    second.stdout.fnmatch_lines(["*test_agent[[]T0-00-run_02[]] FAILED*"])
    assert executions(pytester).count("T0/00/2") == 2
    assert executions(pytester).count("T0/00/1") == 1
    # The earlier attempt is kept aside with its result file.
    kept = experiment_dir / "T0/00/.attempts/run_02-1/run_result.json"
    assert json.loads(kept.read_text())["expresume"]["status"] == "error"

    third = pytester.runpytest("--rerun", "failed,error", "-v")
    third.assert_outcomes(failed=2, deselected=1)
    assert executions(pytester).count("T0/00/1") == 2
    assert executions(pytester).count("T0/00/2") == 3
    assert (experiment_dir / "T0/00/.attempts/run_02-2").is_dir()


def test_runtime_keys_are_not_identity_and_the_new_value_is_used(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester, timeout_s=60, runtime_keys=["timeout_s"])
    pytester.runpytest("-k", "T0").assert_outcomes(passed=4, deselected=4)
    experiment_dir = only_experiment_dir(pytester)
    pytester.makepyfile(
        test_agent="""
        def test_agent(experiment_run):
            experiment_run.result["timeout_seen"] = experiment_run.config["timeout_s"]
        """
    )
    result = pytester.runpytest("--experiment-set", "timeout_s=120")
    result.assert_outcomes(passed=4, deselected=4)
    result.stdout.fnmatch_lines(["expresume: runtime key timeout_s: 60 -> 120 (given value used)"])
    assert only_experiment_dir(pytester) == experiment_dir
    seen = json.loads((experiment_dir / "T1/00/run_01/run_result.json").read_text())
    assert seen["timeout_seen"] == 120
    saved = json.loads((experiment_dir / "config" / "experiment.json").read_text())
    assert saved["timeout_s"] == 60


def test_resume_with_only_the_experiment_dir(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    pytester.runpytest("-k", "T0")
    experiment_dir = only_experiment_dir(pytester)
    pytester.path.joinpath("experiment.json").unlink()
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest("--resume", "--experiment-dir", str(experiment_dir))
    result.assert_outcomes(passed=4, deselected=4)
    assert len(statuses(experiment_dir)) == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment-set", 'tiers=["../x"]'], '*tiers entry "../x" is not a valid name*'),
        (["--experiment-set", 'tiers=["a/b"]'], '*tiers entry "a/b" is not a valid name*'),
        (["--experiment-set", 'tiers=[""]'], '*tiers entry "" is not a valid name*'),
        (["--experiment-set", 'tiers=["T0","T0"]'], "*tiers names 'T0' twice*"),
        (["--experiment-set", 'subtests=[".."]'], '*subtests entry ".." is not a valid name*'),
        (["--experiment-set", "subtests=[]"], "*subtests must be a non-empty list*"),
        (
            ["--experiment-set", "runs_per_subtest=0"],
            "*must be an integer >= 1, got 0",
        ),
        (
            ["--experiment-set", "runs_per_subtest=-1"],
            "*must be an integer >= 1, got -1",
        ),
        (
            ["--experiment-set", 'runs_per_subtest="3"'],
            '*must be an integer >= 1, got "3"',
        ),
        (
            ["--experiment-set", "runs_per_subtest=true"],
            "*must be an integer >= 1, got true",
        ),
        (["--experiment-set", "experiment_id=a/b"], '*experiment_id "a/b" is not valid*'),
        (["--experiment-set", "experiment_id=null"], "*experiment_id null is not valid*"),
        (["--experiment-set", "noequals"], "*--experiment-set expects KEY=VALUE, got 'noequals'"),
        (["--experiment", "missing.json"], "*experiment config file */missing.json does not exist"),
        (["--experiment", "bad.json"], "*experiment config file */bad.json is not valid JSON*"),
        (["--experiment", "list.json"], "*must hold a JSON object, not a list"),
        (
            ["--resume", "--experiment-set", "experiment_id=other"],
            "*nothing to resume: no experiment dir for 'other'*",
        ),
        (["--experiment-dir", "nowhere"], "*--experiment-dir */nowhere is not an experiment dir*"),
        (["--rerun", "passed,bogus"], "*--rerun 'passed,bogus' names bogus; allowed: *"),
        (["--fresh", "--resume"], "*--fresh and --resume contradict each other*"),
        (
            ["--experiment-set", "runs_per_subtests=5"],
            "*the experiment config has the key 'runs_per_subtests', which is not the "
            "plugin's: did you mean 'runs_per_subtest'?*",
        ),
        (["--experiment-set", 'tier=["T0"]'], "*key 'tier', *did you mean 'tiers'?*"),
    ],
)
def test_bad_input_is_one_usage_error_and_writes_nothing(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    write_experiment(pytester)
    pytester.path.joinpath("bad.json").write_text("{not json")
    pytester.path.joinpath("list.json").write_text("[1, 2]")
    before = tree_digest(pytester.path)
    result = pytester.runpytest(*args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: expresume: " + message])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert tree_digest(pytester.path) == before


def test_missing_experiment_id_is_named(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, experiment_id=None)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: expresume: experiment_id is missing*"])
    assert not (pytester.path / "results").exists()


@pytest.mark.parametrize("xdist", [pytest.param([], id="in-process"), XDIST])
def test_two_functions_requesting_experiment_run(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    write_experiment(pytester)
    pytester.makepyfile(test_second="def test_other(experiment_run):\n    pass\n")
    before = tree_digest(pytester.path)
    result = pytester.runpytest("-p", "no:cacheprovider", *xdist)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(
        [
            "ERROR: expresume: only one test function may request experiment_run; "
            "found test_agent.py::test_agent and test_second.py::test_other"
        ]
    )
    assert tree_digest(pytester.path) == before


def test_experiment_run_without_a_config(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_agent="def test_agent(experiment_run):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: expresume: test_agent.py::test_agent requests experiment_run but no experiment*"]
    )
