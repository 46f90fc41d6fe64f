"""The shipped example experiment runs, resumes and finishes as the README says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from expresume_testing import PYTEST_ARGS, checkpoint_json, only_experiment_dir, statuses

EXAMPLE = Path(__file__).parent.parent / "examples" / "agent_eval"


def test_example_waits_out_rate_limits_without_paying_for_agents_twice(
    pytester: pytest.Pytester,
) -> None:
    for name in ("experiment.json", "pytest.ini", "test_agent.py"):
        shutil.copy(EXAMPLE / name, pytester.path / name)
    first = pytester.runpytest(*PYTEST_ARGS)
    assert first.ret == pytest.ExitCode.TESTS_FAILED  # the judges reject some answers
    first.stdout.fnmatch_lines(
        [
            "expresume: starting agent-eval at results/*: 54 runs to run",
            "*expresume: * rate-limit pauses this session (the last until *, judge-provider)",
        ]
    )
    experiment_dir = only_experiment_dir(pytester)
    recorded = statuses(experiment_dir)
    assert len(recorded) == 54
    assert set(recorded.values()) == {"passed", "failed"}  # no error: each limit waited out
    checkpoint = checkpoint_json(experiment_dir)
    assert checkpoint["status"] == "completed"
    limited = sorted(experiment_dir.glob("T*/*/run_*/rate-limited-once"))
    assert limited, "the example shows rate-limited judges"
    assert checkpoint["pause_count"] == len(limited)
    for marker in limited:
        steps = json.loads((marker.parent / "run_result.json").read_text())["expresume"]["steps"]
        # The judge ran again after the pause; the agent's answer was reused, not paid for
        # again: its transcript (appended to by each call) has one line.
        assert set(steps) == {"agent", "judge"}
        transcript = marker.parent / "steps" / "agent" / "transcript.txt"
        assert len(transcript.read_text().splitlines()) == 1

    second = pytester.runpytest(*PYTEST_ARGS)
    assert second.ret == pytest.ExitCode.OK
    second.stdout.fnmatch_lines(
        ["expresume: resuming agent-eval at *: all 54 runs done, nothing to run"]
    )
