"""The shipped example experiment runs, resumes and finishes as the README says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from expresume_testing import PYTEST_ARGS, checkpoint_json, only_experiment_dir, statuses

EXAMPLE = Path(__file__).parent.parent / "examples" / "agent_eval"


def test_example_runs_then_resume_reruns_only_the_rate_limited_runs(
    pytester: pytest.Pytester,
) -> None:
    for name in ("experiment.json", "pytest.ini", "test_agent.py"):
        shutil.copy(EXAMPLE / name, pytester.path / name)
    first = pytester.runpytest(*PYTEST_ARGS)
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    first.stdout.fnmatch_lines(["expresume: starting agent-eval at results/*: 54 runs to run"])
    experiment_dir = only_experiment_dir(pytester)
    recorded = statuses(experiment_dir)
    assert len(recorded) == 54
    errors = sorted(k for k, v in recorded.items() if v == "error")
    verdicts = {k: v for k, v in recorded.items() if v != "error"}
    assert errors, "the example shows rate-limited runs"
    assert "failed" in verdicts.values(), "the example shows runs the judges reject"

    second = pytester.runpytest(*PYTEST_ARGS)
    second.stdout.fnmatch_lines(
        [f"expresume: resuming agent-eval at *: {54 - len(errors)} of 54 runs done, *"]
    )
    outcomes = second.parseoutcomes()
    assert outcomes["deselected"] == 54 - len(errors)
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == len(errors)
    after = statuses(experiment_dir)
    assert {k: after[k] for k in verdicts} == verdicts
    # The second attempt gets past the rate limit; the judges then decide.
    assert {after[k] for k in errors} <= {"passed", "failed"}
    assert checkpoint_json(experiment_dir)["status"] == "completed"
