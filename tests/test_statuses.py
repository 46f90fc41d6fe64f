"""Each outcome pytest can give maps to the status SPEC names, recorded once at the end."""

from __future__ import annotations

import json

import pytest
from expresume_testing import only_experiment_dir, statuses, write_experiment

BODY = """
import pytest

@pytest.fixture
def broken_setup(request):
    if request.node.callspec.id.startswith("T0-04"):
        raise OSError("container failed to start")

@pytest.fixture
def broken_teardown(request):
    yield
    if request.node.callspec.id.startswith("T0-05"):
        raise OSError("workspace cleanup failed")

def test_agent(broken_setup, broken_teardown, experiment_run):
    run = experiment_run
    run.result["partial"] = True
    if run.subtest == "00":
        assert 1 == 2
    if run.subtest == "01":
        pytest.fail("judges voted no")
    if run.subtest == "02":
        raise TimeoutError("agent timed out")
    if run.subtest == "03":
        pytest.skip("model unavailable")
    if run.subtest == "06":
        pytest.xfail("known bad")
    if run.subtest == "08":
        raise KeyError("unexpected")
"""


def test_statuses_follow_the_spec(pytester: pytest.Pytester) -> None:
    write_experiment(
        pytester,
        tiers=["T0"],
        subtests=["00", "01", "02", "03", "04", "05", "06", "07", "08", "09"],
        runs_per_subtest=1,
    )
    pytester.makepyfile(test_agent=BODY)
    pytester.makeconftest(
        """
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                if item.callspec.id.startswith("T0-07"):
                    item.add_marker(pytest.mark.xfail(reason="expected to fail", strict=False))
                if item.callspec.id.startswith("T0-09"):
                    item.add_marker(pytest.mark.xfail(reason="strict", strict=True))
        """
    )
    result = pytester.runpytest()
    assert statuses(only_experiment_dir(pytester)) == {
        "T0/00/1": "failed",  # AssertionError: a verdict
        "T0/01/1": "failed",  # pytest.fail(): a verdict
        "T0/02/1": "error",  # any other exception: did not finish
        "T0/03/1": "skipped",
        "T0/04/1": "error",  # setup failed
        "T0/05/1": "error",  # teardown failed
        "T0/06/1": "failed",  # xfail counts as failed
        "T0/07/1": "passed",  # xpass counts as passed
        "T0/08/1": "error",
        "T0/09/1": "passed",  # strict xpass: still passed for the experiment
    }
    experiment_dir = only_experiment_dir(pytester)
    setup_error = json.loads((experiment_dir / "T0/04/run_01/run_result.json").read_text())
    assert setup_error["expresume"]["message"] == "OSError: container failed to start"
    teardown = json.loads((experiment_dir / "T0/05/run_01/run_result.json").read_text())
    assert teardown["expresume"]["message"] == "OSError: workspace cleanup failed"
    assert teardown["partial"] is True
    skipped = json.loads((experiment_dir / "T0/03/run_01/run_result.json").read_text())
    assert "message" not in skipped["expresume"]
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_result_using_the_plugins_key_is_an_error_and_any_other_value_is_kept(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00", "01"], runs_per_subtest=1)
    pytester.makepyfile(
        test_agent="""
        class Opaque:
            def __repr__(self):
                return "<opaque>"

        def test_agent(experiment_run):
            if experiment_run.subtest == "00":
                experiment_run.result["when"] = Opaque()
            else:
                experiment_run.result["expresume"] = "mine"
        """
    )
    pytester.runpytest()
    experiment_dir = only_experiment_dir(pytester)
    assert statuses(experiment_dir) == {"T0/00/1": "passed", "T0/01/1": "error"}
    first = json.loads((experiment_dir / "T0/00/run_01/run_result.json").read_text())
    assert first["when"] == "<opaque>"
    assert first["expresume"]["conversions"] == [
        {"path": "when", "was": "Opaque", "saved_as": "string (repr)"}
    ]
    second = json.loads((experiment_dir / "T0/01/run_01/run_result.json").read_text())
    assert "may not use the key 'expresume'" in second["expresume"]["message"]


def test_a_status_is_recorded_as_each_run_ends(pytester: pytest.Pytester) -> None:
    """Not batched to session end: the next run already sees the previous one on disk."""
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=3)
    pytester.makepyfile(
        test_agent="""
        from pytest_expresume import CheckpointStore, RunKey

        def test_agent(experiment_run, experiment):
            with CheckpointStore(experiment.dir) as store:
                done = store.load().completed_runs
            expected = {RunKey("T0", "00", r): "passed" for r in range(1, experiment_run.run)}
            assert done == expected
            result_file = experiment.dir / "T0" / "00" / "run_01" / "run_result.json"
            assert result_file.exists() == (experiment_run.run > 1)
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)
