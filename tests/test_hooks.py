"""The pytest_expresume_* hooks, as a conftest uses them."""

from __future__ import annotations

import json

import pytest
from expresume_testing import AGENT_TEST, only_experiment_dir, statuses


def test_configure_hook_folds_own_option_and_subtests_hook_supplies_names(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        def pytest_addoption(parser):
            parser.addoption("--judges", default="opus,sonnet,haiku")

        def pytest_expresume_configure(config, experiment):
            experiment.setdefault("experiment_id", "hooked")
            experiment.setdefault("tiers", ["T0", "T1"])
            experiment["judges"] = config.getoption("judges").split(",")

        def pytest_expresume_subtests(config, experiment, tier):
            return {"T0": ["00", "01", "02"], "T1": ["00"]}[tier]
        """
    )
    pytester.makepyfile(test_agent=AGENT_TEST)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["expresume: starting hooked at *: 4 runs to run"])
    experiment_dir = only_experiment_dir(pytester)
    assert set(statuses(experiment_dir)) == {"T0/00/1", "T0/01/1", "T0/02/1", "T1/00/1"}

    refused = pytester.runpytest("--judges", "opus,sonnet")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(['  judges: ["opus","sonnet","haiku"] -> ["opus","sonnet"]'])


def test_max_subtests_keeps_the_first_n(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        def pytest_expresume_subtests(config, experiment, tier):
            return ["00", "01", "02", "03"]
        """
    )
    pytester.path.joinpath("experiment.json").write_text(
        json.dumps({"experiment_id": "m", "tiers": ["T0"], "max_subtests": 2})
    )
    pytester.makepyfile(test_agent=AGENT_TEST)
    pytester.runpytest("--experiment", "experiment.json").assert_outcomes(passed=2)
    assert set(statuses(only_experiment_dir(pytester))) == {"T0/00/1", "T0/01/1"}


def test_run_recorded_hook_sees_each_run_after_its_file(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import json

        SEEN = []

        def pytest_expresume_run_recorded(config, record):
            assert record.result_path.exists()
            data = json.loads(record.result_path.read_text())
            assert data["expresume"]["status"] == record.status
            SEEN.append(f"{record.key.tier}/{record.key.subtest}/{record.key.run}:{record.status}")

        def pytest_sessionfinish(session):
            (session.config.rootpath / "recorded.txt").write_text("\\n".join(SEEN))
        """
    )
    pytester.path.joinpath("experiment.json").write_text(
        json.dumps(
            {
                "experiment_id": "r",
                "tiers": ["T0"],
                "subtests": ["00"],
                "runs_per_subtest": 2,
                "behaviour": {"T0-00-2": "fail"},
            }
        )
    )
    pytester.makepyfile(test_agent=AGENT_TEST)
    pytester.runpytest("--experiment", "experiment.json").assert_outcomes(passed=1, failed=1)
    assert pytester.path.joinpath("recorded.txt").read_text().split() == [
        "T0/00/1:passed",
        "T0/00/2:failed",
    ]


def test_missing_subtests_without_hook_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_agent=AGENT_TEST)
    result = pytester.runpytest(
        "--experiment-set", "experiment_id=x", "--experiment-set", 'tiers=["T0"]'
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: expresume: no subtests for tier 'T0'*"])
