"""Steps inside a run, rate limits and --max-errors, as users meet them: real sessions, each
step's function counting its calls in a log file across sessions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from expresume_testing import (
    XDIST,
    checkpoint_json,
    only_experiment_dir,
    pytest_command,
    statuses,
    write_experiment,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_expresume.steps import StepBook, StepError, finished_steps

STEPS_TEST = """
import os, pathlib, time
from pytest_expresume import RateLimited

class ProviderBusy(Exception):
    pass

def log(line):
    with open(os.environ["CALLS_LOG"], "a") as f:
        f.write(line + "\\n")

def test_agent(experiment_run):
    run = experiment_run
    rid = f"{run.tier}-{run.subtest}-{run.run}"
    log(f"start {rid} {time.time()}")

    def agent():
        log(f"agent {rid}")
        (run.step_dir("agent") / "workspace.txt").write_text(f"built for {rid}")
        time.sleep(float(os.environ.get("AGENT_SECONDS", "0")))
        return {"answer": run.run * 10}

    out = run.step("agent", agent)

    def judge():
        log(f"judge {rid}")
        mode = os.environ.get("JUDGE", "ok")
        marker = pathlib.Path(os.environ["CALLS_LOG"]).with_name("limited-" + rid)
        if mode == "hang":
            time.sleep(600)
        if mode == "error":
            raise RuntimeError("judge provider down")
        if mode in ("ratelimit", "hook") and not marker.exists() and rid in os.environ.get(
            "LIMITED", rid
        ):
            marker.touch()
            seconds = float(os.environ.get("RETRY", "0.5"))
            log(f"limited {rid} {time.time()} {seconds}")
            if mode == "hook":
                raise ProviderBusy("429")
            raise RateLimited(retry_after=seconds, source="judgeco")
        return out["answer"] > 0

    run.result["verdict"] = run.step("judge", judge)
    run.result["workspace"] = (run.step_dir("agent") / "workspace.txt").read_text()
"""


@pytest.fixture
def calls(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = pytester.path / "calls.log"
    monkeypatch.setenv("CALLS_LOG", str(log))
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=2)
    pytester.makepyfile(test_agent=STEPS_TEST)
    return log


def _calls(log: Path, what: str) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.split()[1] for line in lines if line.split()[0] == what]


def _result(experiment_dir: Path, run: int) -> dict[str, Any]:
    path = experiment_dir / "T0" / "00" / f"run_{run:02d}" / "run_result.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_a_judge_error_does_not_pay_for_the_agent_again(
    pytester: pytest.Pytester, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUDGE", "error")
    first = pytester.runpytest()
    first.assert_outcomes(failed=2)
    experiment_dir = only_experiment_dir(pytester)
    assert statuses(experiment_dir) == {"T0/00/1": "error", "T0/00/2": "error"}

    monkeypatch.setenv("JUDGE", "ok")
    second = pytester.runpytest()
    second.assert_outcomes(passed=2)
    assert _calls(calls, "agent") == ["T0-00-1", "T0-00-2"]  # paid once, in session 1
    assert len(_calls(calls, "judge")) == 4
    result = _result(experiment_dir, 1)
    assert result["expresume"]["steps"]["agent"]["reused"] is True
    assert result["expresume"]["steps"]["judge"]["reused"] is False
    assert result["workspace"] == "built for T0-00-1"  # the agent's files carried over
    assert (experiment_dir / "T0/00/run_01/steps/agent.json").read_text() == '{"answer":10}'
    # The earlier attempt keeps its own files.
    assert (experiment_dir / "T0/00/.attempts/run_01-1/steps/agent/workspace.txt").is_file()


def test_from_step_rejudges_finished_runs_without_their_agents(
    pytester: pytest.Pytester, calls: Path
) -> None:
    pytester.runpytest().assert_outcomes(passed=2)
    again = pytester.runpytest("--rerun", "passed,failed", "--from-step", "judge")
    again.assert_outcomes(passed=2)
    assert len(_calls(calls, "agent")) == 2
    assert len(_calls(calls, "judge")) == 4
    # --from-step agent runs everything again.
    pytester.runpytest("--rerun", "passed", "--from-step", "agent").assert_outcomes(passed=2)
    assert len(_calls(calls, "agent")) == 4


def test_until_step_stops_each_run_after_it_and_records_nothing(
    pytester: pytest.Pytester, calls: Path
) -> None:
    first = pytester.runpytest("--until-step", "agent")
    assert first.ret == 0, first.stdout.str()
    first.assert_outcomes(skipped=2)
    experiment_dir = only_experiment_dir(pytester)
    assert statuses(experiment_dir) == {}
    assert not (experiment_dir / "T0/00/run_01/run_result.json").exists()
    assert _calls(calls, "judge") == []
    assert finished_steps(experiment_dir / "T0/00/run_01") == ["agent"]

    status = pytester.runpytest("--experiment-status")
    status.stdout.fnmatch_lines(["pending runs with finished steps: agent done: 2"])

    pytester.runpytest().assert_outcomes(passed=2)
    assert len(_calls(calls, "agent")) == 2  # the next session went on from the judge
    assert len(_calls(calls, "judge")) == 2


def test_a_bad_step_option_is_a_usage_error(pytester: pytest.Pytester, calls: Path) -> None:
    result = pytester.runpytest("--from-step", "no/slash")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--from-step: step name 'no/slash' is not valid*"])
    assert not (pytester.path / "results").exists()


def test_a_rate_limit_pauses_and_retries_the_run_in_the_same_session(
    pytester: pytest.Pytester, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUDGE", "ratelimit")
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*expresume: T0-00-run_01 was rate-limited by judgeco: the experiment pauses "
            "until *(1 s), then the run goes on*",
            "*expresume: 2 rate-limit pauses this session (the last until *, judgeco)*",
        ]
    )
    assert len(_calls(calls, "agent")) == 2  # never paid twice
    assert len(_calls(calls, "judge")) == 4
    experiment_dir = only_experiment_dir(pytester)
    checkpoint = checkpoint_json(experiment_dir)
    assert checkpoint["status"] == "completed"
    assert checkpoint["pause_count"] == 2
    assert checkpoint["rate_limit_source"] == "judgeco"
    # Paid once, in this attempt, before the pause: listed as run, not reused.
    assert _result(experiment_dir, 1)["expresume"]["steps"]["agent"]["reused"] is False
    assert not (experiment_dir / "rate_limit_pause.json").exists()


def test_a_retry_keeps_what_setup_put_in_the_result_and_honours_from_step_once(
    pytester: pytest.Pytester, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call runs again from what fixtures left in run.result; a step --from-step made
    run is reused by the retry, not paid again, and is listed as run, not reused."""
    pytester.makeconftest(
        """
import pytest

@pytest.fixture(autouse=True)
def judges_in_result(experiment_run):
    experiment_run.result["judge_models"] = ["opus"]
"""
    )
    pytester.runpytest().assert_outcomes(passed=2)
    monkeypatch.setenv("JUDGE", "ratelimit")
    monkeypatch.setenv("LIMITED", "T0-00-1")
    again = pytester.runpytest("--rerun", "passed", "--from-step", "agent")
    again.assert_outcomes(passed=2)
    assert _calls(calls, "agent").count("T0-00-1") == 2  # session 1, then --from-step once
    result = _result(only_experiment_dir(pytester), 1)
    assert result["judge_models"] == ["opus"]
    assert result["expresume"]["steps"]["agent"]["reused"] is False


def test_a_provider_that_says_retry_after_zero_is_not_retried_forever(
    pytester: pytest.Pytester, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUDGE", "ratelimit-always")
    pytester.makepyfile(
        test_agent="""
from pytest_expresume import RateLimited

def test_agent(experiment_run):
    with open("calls.log", "a") as log:
        log.write("call x\\n")
    raise RateLimited(retry_after=0, source="nobody")
"""
    )
    pytester.makeini("[pytest]\nexpresume_config = experiment.json\nexpresume_max_pause = 2\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # Each pause lasts a second at least: the third one would pass the 2 s limit.
    assert len(_calls(calls, "call")) == 3
    result.stdout.fnmatch_lines(["*rate-limited by nobody for 3 s in all*"])


def test_a_from_step_no_run_has_is_said(pytester: pytest.Pytester, calls: Path) -> None:
    pytester.runpytest().assert_outcomes(passed=2)
    again = pytester.runpytest("--rerun", "passed", "--from-step", "judeg")
    again.stdout.fnmatch_lines(
        ["expresume: --from-step judeg: no run recorded this session has a step of that name*"]
    )
    assert len(_calls(calls, "judge")) == 2  # every finished step was reused


def test_the_rate_limit_hook_pauses_for_a_providers_own_exception(
    pytester: pytest.Pytester, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUDGE", "hook")
    pytester.makeconftest(
        """
def pytest_expresume_rate_limit(config, exc):
    return 0.2 if type(exc).__name__ == "ProviderBusy" else None
"""
    )
    pytester.runpytest().assert_outcomes(passed=2)
    assert checkpoint_json(only_experiment_dir(pytester))["rate_limit_source"] == "ProviderBusy"
    assert len(_calls(calls, "agent")) == 2


def test_a_pause_longer_than_the_limit_records_error_and_stops(
    pytester: pytest.Pytester, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUDGE", "ratelimit")
    monkeypatch.setenv("RETRY", "7200")
    pytester.makeini("[pytest]\nexpresume_config = experiment.json\nexpresume_max_pause = 60\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)  # the second run never started
    result.stdout.fnmatch_lines(["*longer than expresume_max_pause (60 s)*"])
    experiment_dir = only_experiment_dir(pytester)
    assert statuses(experiment_dir) == {"T0/00/1": "error"}
    assert "RateLimited" in _result(experiment_dir, 1)["expresume"]["message"]
    # The next session starts free and goes on.
    monkeypatch.setenv("JUDGE", "ok")
    pytester.runpytest().assert_outcomes(passed=2)
    assert len(_calls(calls, "agent")) == 2


@pytest.mark.parametrize(
    "timeout", [[], ["--timeout=1", "-o", "timeout_func_only=true"]], ids=["", "timeout"]
)
def test_under_xdist_no_run_starts_during_a_pause(
    pytester: pytest.Pytester, calls: Path, monkeypatch: pytest.MonkeyPatch, timeout: list[str]
) -> None:
    """A worker waits out another's pause before pytest-timeout's timer starts (the wait
    is no run's time), and the paused run's retried call is timed as its first was."""
    pytest.importorskip("xdist")
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=8)
    pytester.makepyfile(test_agent=STEPS_TEST)
    monkeypatch.setenv("JUDGE", "ratelimit")
    monkeypatch.setenv("LIMITED", "T0-00-2")
    monkeypatch.setenv("RETRY", "2")
    monkeypatch.setenv("AGENT_SECONDS", "0.2")
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", *timeout)
    result.assert_outcomes(passed=8)
    lines = [line.split() for line in calls.read_text().splitlines()]
    limited = [(float(parts[2]), float(parts[3])) for parts in lines if parts[0] == "limited"]
    assert len(limited) == 1
    begin, seconds = limited[0]
    end = begin + seconds
    starts = [(parts[1], float(parts[2])) for parts in lines if parts[0] == "start"]
    # A run whose process checked for a pause just before it was announced may log its
    # start a moment later (a loaded machine): half a second of grace, then none may start.
    inside = [(rid, at) for rid, at in starts if begin + 0.5 < at < end - 0.05]
    assert inside == [], (begin, end, sorted(starts))
    # Each run's body started once, the paused one twice (its call ran again in place,
    # after the pause), and its agent was paid once.
    started = sorted(rid for rid, _ in starts)
    assert started == sorted([f"T0-00-{n}" for n in range(1, 9)] + ["T0-00-2"])
    assert [at for rid, at in starts if rid == "T0-00-2"][1] >= end - 0.05
    assert len(_calls(calls, "agent")) == 8


@pytest.mark.parametrize("mode", [[], XDIST])
def test_max_errors_stops_the_session_before_it_pays_for_the_rest(
    pytester: pytest.Pytester, calls: Path, monkeypatch: pytest.MonkeyPatch, mode: list[str]
) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=12)
    pytester.makepyfile(test_agent=STEPS_TEST)
    monkeypatch.setenv("JUDGE", "error")
    result = pytester.runpytest_subprocess("--max-errors", "3", *mode)
    assert result.ret in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED)
    result.stdout.fnmatch_lines(
        ["*expresume: 3 runs in a row ended in error (--max-errors 3); the last, *"]
    )
    recorded = statuses(only_experiment_dir(pytester))
    # In-process exactly 3; under xdist each worker may finish the run it was in.
    assert 3 <= len(recorded) <= (3 if not mode else 5)
    assert set(recorded.values()) == {"error"}
    assert len(_calls(calls, "agent")) == len(recorded)


def test_max_errors_zero_turns_the_limit_off(
    pytester: pytest.Pytester, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=12)
    pytester.makepyfile(test_agent=STEPS_TEST)
    monkeypatch.setenv("JUDGE", "error")
    pytester.makeini("[pytest]\nexpresume_config = experiment.json\nexpresume_max_errors = 0\n")
    pytester.runpytest().assert_outcomes(failed=12)


def test_the_default_max_errors_is_ten_in_a_row(
    pytester: pytest.Pytester, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=12)
    pytester.makepyfile(test_agent=STEPS_TEST)
    monkeypatch.setenv("JUDGE", "error")
    result = pytester.runpytest()
    result.assert_outcomes(failed=10)
    result.stdout.fnmatch_lines(["*10 runs in a row ended in error (--max-errors 10)*"])


def test_a_kill_between_two_steps_keeps_the_finished_step(
    pytester: pytest.Pytester, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "JUDGE": "hang"}
    proc = subprocess.Popen(
        pytest_command(),
        cwd=pytester.path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not _calls(calls, "judge"):
        assert proc.poll() is None
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert _calls(calls, "agent") == ["T0-00-1"]

    pytester.runpytest().assert_outcomes(passed=2)
    assert _calls(calls, "agent") == ["T0-00-1", "T0-00-2"]  # the killed run's agent reused
    experiment_dir = only_experiment_dir(pytester)
    assert _result(experiment_dir, 1)["expresume"]["steps"]["agent"]["reused"] is True


# -- the step book, directly --


def test_a_step_name_must_be_plain_and_used_once(tmp_path: Path) -> None:
    book = StepBook(tmp_path, None)
    for bad in ("", "a/b", "..", "a b", "é", "agent.json"):
        with pytest.raises(StepError):
            book.run(bad, lambda: 1, (), {})
    book.run("agent", lambda: 1, (), {})
    with pytest.raises(StepError, match="already called"):
        book.run("agent", lambda: 1, (), {})


def test_a_step_value_json_cannot_hold_is_saved_converted(tmp_path: Path) -> None:
    book = StepBook(tmp_path, None)
    assert book.run("judge", lambda: {"votes": {3, 1}}, (), {}) == {"votes": {3, 1}}
    assert json.loads((tmp_path / "steps" / "judge.json").read_text()) == {"votes": [1, 3]}
    assert [c.path for c in book.conversions] == ["judge.votes"]


NAMES = ["a", "b", "c", "d", "e"]


@settings(deadline=None)  # each step's value is flushed: slow on a loaded machine
@given(
    finished_before=st.integers(min_value=0, max_value=5),
    called=st.integers(min_value=1, max_value=5),
    from_step=st.sampled_from([None, *NAMES]),
    torn=st.sets(st.sampled_from(NAMES)),
)
def test_reuse_is_the_longest_finished_prefix(
    tmp_path_factory: pytest.TempPathFactory,
    finished_before: int,
    called: int,
    from_step: str | None,
    torn: set[str],
) -> None:
    """Whatever the earlier attempt finished (some of its value files torn), a new attempt
    reuses exactly the steps before the first one it must run, and runs every later one."""
    root = tmp_path_factory.mktemp("steps")
    earlier = StepBook(root / "earlier", None, fsync=False)
    for name in NAMES[:finished_before]:
        earlier.run(name, lambda n=name: f"old {n}", (), {})
    for name in torn:
        path = root / "earlier" / "steps" / f"{name}.json"
        if path.exists():
            path.write_bytes(b'"tor')
    book = StepBook(root / "now", root / "earlier", from_step=from_step, fsync=False)
    ran: list[str] = []
    values = [
        book.run(name, lambda n=name: ran.append(n) or f"new {n}", (), {})
        for name in NAMES[:called]
    ]
    expected_reused: list[str] = []
    for name in NAMES[:called]:
        if name == from_step or name not in NAMES[:finished_before] or name in torn:
            break
        expected_reused.append(name)
    assert [n for n, r in book.called.items() if r.reused] == expected_reused
    assert ran == NAMES[len(expected_reused) : called]
    assert values == [f"old {n}" if n in expected_reused else f"new {n}" for n in NAMES[:called]]
    assert finished_steps(root / "now") == NAMES[:called]


# -- the pause file, directly --


def test_a_pause_on_file_that_ends_later_wins_and_is_waited_out(tmp_path: Path) -> None:
    from pytest_expresume.rate_limits import announce_pause, current_pause, wait_out_pause

    assert current_pause(tmp_path) is None
    first = announce_pause(tmp_path, 30, "a", now=1000.0)
    assert announce_pause(tmp_path, 10, "b", now=1005.0) == first  # ends earlier: kept
    later = announce_pause(tmp_path, 60, "c", now=1010.0)
    assert current_pause(tmp_path) == later
    assert later.until == 1070.0
    now = [1050.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    assert wait_out_pause(tmp_path, clock=lambda: now[0], sleep=sleep) == pytest.approx(20.0)
    assert wait_out_pause(tmp_path, clock=lambda: now[0], sleep=sleep) == 0.0
    (tmp_path / "rate_limit_pause.json").write_bytes(b"{garbled")
    assert current_pause(tmp_path) is None  # a torn file pauses nobody
