"""Next to the plugins evaluation suites install: each case with the real plugin.

Retry plugins (pytest-rerunfailures, pytest-retry) record only a run's final attempt;
pytest-timeout's timeouts are errors; pytest-repeat and extra parameters are refused;
pytest-sugar and pytest-randomly change nothing recorded; a killed xdist controller costs
no finished run; path options written as two tokens are explained.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from expresume_testing import (
    XDIST,
    only_experiment_dir,
    pytest_command,
    statuses,
    write_experiment,
)

from pytest_expresume import load_checkpoint

#: Counts recordings and attempts; the first attempt of runs named in FLAKY fails.
FLAKY_TEST = """
import json, os, pathlib, time
import pytest

FLAKY = {"T0-00-run_02", "T0-01-run_01"}
ALWAYS = {"T1-00-run_01"}

def test_agent(experiment_run):
    run = experiment_run
    marker = pathlib.Path(f"attempts-{run.key.test_id}")
    attempt = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempt))
    run.result["attempt"] = attempt
    (run.dir / "log.txt").write_text(f"attempt {attempt}")
    if run.key.test_id in ALWAYS:
        assert False, f"judges said no on attempt {attempt}"
    if run.key.test_id in FLAKY and attempt == 1:
        time.sleep(0.3)
        assert False, "flaky first attempt"
"""

RECORDED_CONFTEST = """
def pytest_expresume_run_recorded(config, record):
    with open(config.rootpath / "recorded.log", "a") as log:
        log.write(f"{record.key.test_id} {record.status}\\n")
"""


def _recorded(pytester: pytest.Pytester) -> list[str]:
    log = pytester.path / "recorded.log"
    return sorted(log.read_text().splitlines()) if log.exists() else []


def _result(experiment_dir: Path, run: str) -> dict[str, object]:
    tier, subtest, number = run.split("/")
    path = experiment_dir / tier / subtest / f"run_{int(number):02d}" / "run_result.json"
    data: dict[str, object] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize(
    "retry_args",
    # Each alone: both act on the `flaky` mark, so pytest-retry's retries are rerun too.
    [["--reruns", "2", "-p", "no:pytest-retry"], ["--retries", "2", "-p", "no:rerunfailures"]],
    ids=["pytest-rerunfailures", "pytest-retry"],
)
@pytest.mark.parametrize("xdist", [pytest.param([], id="in-process"), XDIST])
def test_only_the_final_attempt_is_recorded(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    retry_args: list[str],
    xdist: list[str],
) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest -p no:sugar -p no:randomly")
    write_experiment(pytester, runs_per_subtest=2)
    pytester.makepyfile(test_agent=FLAKY_TEST)
    pytester.makeconftest(RECORDED_CONFTEST)
    # In a process of its own: pytest-retry keeps its settings in module globals.
    result = pytester.runpytest_subprocess(*retry_args, *xdist)
    result.assert_outcomes(passed=7, failed=1)

    experiment_dir = only_experiment_dir(pytester)
    runs = [f"{t}-{s}-run_0{r}" for t in ("T0", "T1") for s in ("00", "01") for r in (1, 2)]
    expected = {run: "passed" for run in runs} | {"T1-00-run_01": "failed"}
    assert _recorded(pytester) == sorted(f"{run} {status}" for run, status in expected.items())
    assert statuses(experiment_dir)["T0/00/2"] == "passed"
    flaky = _result(experiment_dir, "T0/00/2")
    assert flaky["attempt"] == 2
    own = flaky["expresume"]
    assert isinstance(own, dict)
    assert "message" not in own
    assert own["duration_seconds"] < 0.3  # the final attempt's, not the sum
    # The first attempt's run dir is kept aside, like any earlier attempt.
    aside = experiment_dir / "T0/00/.attempts/run_02-1/log.txt"
    assert aside.read_text() == "attempt 1"
    failing = _result(experiment_dir, "T1/00/1")["expresume"]
    assert isinstance(failing, dict)
    assert failing["message"] == "AssertionError: judges said no on attempt 3"


KILLED_ON_RETRY_TEST = """
import os, pathlib, time

def test_agent(experiment_run):
    run = experiment_run
    marker = pathlib.Path(f"attempts-{run.key.test_id}")
    attempt = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempt))
    if run.key.test_id == "T0-00-run_02":
        if attempt == 1:
            assert False, "first attempt fails"
        pathlib.Path("second-attempt-started").write_text("")
        time.sleep(60)
"""


def test_a_kill_during_a_retry_leaves_the_run_to_run_again(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=3)
    pytester.makepyfile(test_agent=KILLED_ON_RETRY_TEST)
    proc = subprocess.Popen(
        pytest_command("--reruns", "2"),
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = pytester.path / "second-attempt-started"
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the second attempt never started"
    proc.kill()
    proc.wait(timeout=30)

    experiment_dir = only_experiment_dir(pytester)
    checkpoint = load_checkpoint(experiment_dir)
    assert [k.run for k in checkpoint.completed_runs] == [1]  # the failed attempt: nothing
    assert not (experiment_dir / "T0/00/run_02/run_result.json").exists()
    assert (experiment_dir / "T0/00/.attempts/run_02-1").is_dir()

    (pytester.path / "attempts-T0-00-run_02").write_text("5")  # it passes from now on
    pytester.makepyfile(test_agent=KILLED_ON_RETRY_TEST.replace("time.sleep(60)", "pass"))
    resumed = pytester.runpytest("--reruns", "2")
    resumed.assert_outcomes(passed=2, deselected=1)
    assert statuses(experiment_dir) == {
        "T0/00/1": "passed",
        "T0/00/2": "passed",
        "T0/00/3": "passed",
    }


HANGING_TEST = """
import os, pathlib, time

def test_agent(experiment_run):
    run = experiment_run
    with open(os.environ["EXEC_LOG"], "a") as log:
        log.write(run.key.test_id + "\\n")
    if run.key.test_id == "T0-00-run_02":
        time.sleep(30)
"""


def test_a_signal_timeout_is_an_error_and_runs_again(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=3)
    monkeypatch.setenv("EXEC_LOG", str(pytester.path / "executions.log"))
    pytester.makepyfile(test_agent=HANGING_TEST)
    result = pytester.runpytest("--timeout", "1", "--timeout-method", "signal")
    result.assert_outcomes(passed=2, failed=1)
    experiment_dir = only_experiment_dir(pytester)
    assert statuses(experiment_dir)["T0/00/2"] == "error"  # not a verdict
    own = _result(experiment_dir, "T0/00/2")["expresume"]
    assert isinstance(own, dict)
    assert "from pytest-timeout" in str(own["message"])

    pytester.makepyfile(test_agent=HANGING_TEST.replace("time.sleep(30)", "pass"))
    pytester.runpytest("--timeout", "1").assert_outcomes(passed=1, deselected=2)


def test_a_run_that_kills_the_process_runs_after_the_others(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00", "01"], runs_per_subtest=3)
    log = pytester.path / "executions.log"
    monkeypatch.setenv("EXEC_LOG", str(log))
    pytester.makepyfile(test_agent=HANGING_TEST)
    # The thread method ends the whole process on a timeout: nothing is recorded for it.
    first = pytester.runpytest_subprocess("--timeout", "1", "--timeout-method", "thread")
    assert first.ret != 0
    assert log.read_text().split() == ["T0-00-run_01", "T0-00-run_02"]

    log.write_text("")
    second = pytester.runpytest_subprocess("--timeout", "1", "--timeout-method", "thread")
    second.stdout.fnmatch_lines(
        ["expresume: 1 runs were in flight when a session died (a run dir, no result file)*"]
    )
    # Every other run ran before the one that hangs, which then killed the process again.
    assert log.read_text().split() == [
        "T0-00-run_03",
        "T0-01-run_01",
        "T0-01-run_02",
        "T0-01-run_03",
        "T0-00-run_02",
    ]
    done = load_checkpoint(only_experiment_dir(pytester)).completed_runs
    assert len(done) == 5


def test_the_run_status_hook_classifies_a_suites_own_exceptions(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=2)
    pytester.makeconftest(
        """
        def pytest_expresume_run_status(config, item, report, excinfo):
            if excinfo is not None and excinfo.typename == "APITimeoutError":
                return "error"
        """
    )
    pytester.makepyfile(
        test_agent="""
        class APITimeoutError(AssertionError):
            pass

        def test_agent(experiment_run):
            if experiment_run.run == 2:
                raise APITimeoutError("provider took too long")
        """
    )
    pytester.runpytest().assert_outcomes(passed=1, failed=1)
    assert statuses(only_experiment_dir(pytester)) == {"T0/00/1": "passed", "T0/00/2": "error"}


@pytest.mark.parametrize(
    ("body", "args", "named"),
    [
        (
            "def test_agent(experiment_run):\n    pass\n",
            ["--count", "2"],
            "'__pytest_repeat_step_number' (pytest-repeat's --count)",
        ),
        (
            "import pytest\n\n@pytest.mark.parametrize('prompt', ['a', 'b'])\n"
            "def test_agent(experiment_run, prompt):\n    pass\n",
            [],
            "'prompt'",
        ),
        (
            "import pytest\n\n@pytest.fixture(params=['small', 'large'])\n"
            "def model(request):\n    return request.param\n\n"
            "def test_agent(experiment_run, model):\n    pass\n",
            [],
            "'model'",
        ),
    ],
    ids=["pytest-repeat", "parametrize", "parametrized-fixture"],
)
@pytest.mark.parametrize("xdist", [pytest.param([], id="in-process"), XDIST])
def test_a_run_parametrized_twice_is_refused(
    pytester: pytest.Pytester, body: str, args: list[str], named: str, xdist: list[str]
) -> None:
    write_experiment(pytester)
    pytester.makepyfile(test_agent=body)
    result = pytester.runpytest(*args, *xdist)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stdout.no_fnmatch_line("*expresume: demo*")  # no summary of an unstarted run
    result.stderr.fnmatch_lines(
        [
            f"ERROR: expresume: test_agent.py::test_agent[[]*[]] is parametrized over {named} "
            "besides the experiment grid; put such variations into subtests or tiers"
        ]
    )
    assert not (pytester.path / "results").exists()


@pytest.mark.xdist
def test_pytest_sugar_under_xdist_resumes_and_records(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest -p no:pytest-retry")
    write_experiment(pytester, behaviour={"T0-01-2": "error"})
    pytester.makeconftest(RECORDED_CONFTEST)
    first = pytester.runpytest_subprocess("-p", "sugar", "-n", "2")
    assert first.ret == pytest.ExitCode.TESTS_FAILED, first.stdout.str()
    second = pytester.runpytest_subprocess("-p", "sugar", "-n", "2")
    assert second.ret == pytest.ExitCode.TESTS_FAILED, second.stdout.str()
    assert "INTERNALERROR" not in second.stdout.str() + second.stderr.str()
    experiment_dir = only_experiment_dir(pytester)
    assert len(statuses(experiment_dir)) == 8
    # Seven runs once, the error run twice (it runs again on resume): nothing else.
    recorded = _recorded(pytester)
    assert len(recorded) == 9
    assert recorded.count("T0-01-run_02 error") == 2


def test_pytest_randomly_order_changes_nothing_recorded(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest -p no:pytest-retry -p no:sugar")
    write_experiment(pytester, runs_per_subtest=3)
    pytester.makeconftest(RECORDED_CONFTEST)
    pytester.runpytest(
        "-p", "randomly", "-p", "no:sugar", "-p", "randomly", "-k", "T0"
    ).assert_outcomes(passed=6, deselected=6)
    pytester.runpytest("-p", "randomly", "-p", "no:sugar").assert_outcomes(passed=6, deselected=6)
    assert len(_recorded(pytester)) == 12
    assert len(set(_recorded(pytester))) == 12


def _kill_the_controller_once(
    pytester: pytest.Pytester, args: list[str], log: Path, word: str, count: int
) -> float:
    """Start an xdist session in a process of its own and kill -9 its controller alone (as
    the OOM killer would) once ``log`` says ``word`` ``count`` times; when it was killed."""
    proc = subprocess.Popen(
        pytest_command(*args),
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count(word) >= count:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    killed_at = time.time()
    proc.wait(timeout=30)
    return killed_at


SLOW_TEST = """
import os, time

def test_agent(experiment_run):
    key = experiment_run.key.test_id
    with open(os.environ["EXEC_LOG"], "a") as log:
        log.write(f"start {key} {time.time()}\\n")
    time.sleep(0.4)
    experiment_run.result["done"] = True
    with open(os.environ["EXEC_LOG"], "a") as log:
        log.write(f"end {key} {time.time()}\\n")
"""


@pytest.mark.xdist
def test_a_killed_xdist_controller_costs_no_finished_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00", "01", "02", "03"], runs_per_subtest=5)
    log = pytester.path / "executions.log"
    monkeypatch.setenv("EXEC_LOG", str(log))
    pytester.makepyfile(test_agent=SLOW_TEST)
    killed_at = _kill_the_controller_once(pytester, ["-n", "2"], log, "end ", 4)
    time.sleep(2)  # the workers notice, finish what they run, start nothing new
    entries = [line.split() for line in log.read_text().splitlines()]
    late_starts = [
        key for kind, key, at in entries if kind == "start" and float(at) > killed_at + 0.2
    ]
    assert late_starts == []
    ended = {key for kind, key, _ in entries if kind == "end"}

    experiment_dir = only_experiment_dir(pytester)
    for key in ended:  # a run that finished has its result file, written by its worker
        tier, subtest, run = key.split("-")
        assert (experiment_dir / tier / subtest / run / "run_result.json").exists(), key
    log.write_text("")
    resumed = pytester.runpytest("-n", "2")
    assert resumed.ret == pytest.ExitCode.OK
    ran_again = {line.split()[1] for line in log.read_text().splitlines()}
    assert not ran_again & ended  # nothing that finished was paid for twice
    assert len(statuses(experiment_dir)) == 20


FLAKY_SLOW_TEST = """
import os, pathlib, time

def test_agent(experiment_run):
    key = experiment_run.key.test_id
    counter = pathlib.Path(os.environ["EXEC_LOG"]).with_name(key + ".attempts")
    attempt = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempt))
    with open(os.environ["EXEC_LOG"], "a") as log:
        log.write(f"start {key} {attempt}\\n")
    time.sleep(1.0)
    assert attempt >= 2, "flaky: a first attempt fails"
"""


@pytest.mark.xdist
def test_a_killed_xdist_controller_leaves_an_attempt_to_be_rerun_unrecorded(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker keeps a run that finishes after its controller died; not an attempt that
    # pytest-rerunfailures would run again: that one is no verdict.
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:pytest-retry -p no:randomly -p no:sugar")
    write_experiment(pytester, tiers=["T0"], subtests=["00", "01"], runs_per_subtest=1)
    log = pytester.path / "executions.log"
    monkeypatch.setenv("EXEC_LOG", str(log))
    pytester.makepyfile(test_agent=FLAKY_SLOW_TEST)
    # During both runs' first (failing) attempts.
    _kill_the_controller_once(pytester, ["-n", "2", "--reruns", "2"], log, "start ", 2)
    time.sleep(2.5)  # the workers finish their attempts, then find nobody to report to
    assert log.read_text().count("start ") == 2, log.read_text()
    experiment_dir = only_experiment_dir(pytester)
    assert list(experiment_dir.glob("*/*/run_*/run_result.json")) == []

    resumed = pytester.runpytest_subprocess("-n", "2", "--reruns", "2")
    assert resumed.ret == pytest.ExitCode.OK, "\n".join(resumed.outlines + resumed.errlines)
    assert statuses(experiment_dir) == {"T0/00/1": "passed", "T0/01/1": "passed"}


def test_a_path_option_written_as_two_tokens_is_explained(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    write_experiment(pytester)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = pytester.runpytest("--results-root", str(elsewhere))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: expresume: pytest read '--results-root {elsewhere}' before it knew that "
            f"--results-root takes a value, so it took {elsewhere} for a path to test when it "
            f"chose the rootdir (*) and the ini file (none found): write "
            f"--results-root={elsewhere}"
        ]
    )
    assert list(elsewhere.iterdir()) == []
    pytester.runpytest(f"--results-root={elsewhere}").assert_outcomes(passed=8)
    assert len(list(elsewhere.iterdir())) == 1
    # Inside the project the ini file is found all the same: both forms work.
    pytester.mkdir("inside")
    pytester.runpytest("--results-root", "inside").assert_outcomes(passed=8)


@pytest.mark.parametrize("above", ["pyproject.toml", "pytest.ini"])
def test_a_path_option_as_two_tokens_under_another_projects_config_is_explained(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, above: str
) -> None:
    # A monorepo: the evals' pytest.ini in repo/evals, another config file in repo/, the
    # results in repo/results. pytest, taking ../results for a test path, finds repo's.
    write_experiment(pytester)
    evals = pytester.mkdir("evals")
    for name in ("experiment.json", "test_agent.py"):
        (pytester.path / name).rename(evals / name)
    (pytester.path / "tox.ini").unlink()  # pytester's makeini
    (evals / "pytest.ini").write_text("[pytest]\nexpresume_config = experiment.json\n")
    (pytester.path / above).write_text(
        '[project]\nname = "mono"\n' if above == "pyproject.toml" else "[pytest]\n"
    )
    results = pytester.mkdir("results")
    monkeypatch.chdir(evals)
    refused = pytester.runpytest("--results-root", "../results")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(
        [
            "ERROR: expresume: pytest read '--results-root ../results' before it knew that "
            "--results-root takes a value, so it took ../results for a path to test when it "
            # pytest 8.0 takes no pyproject.toml without a pytest table: none found there.
            "chose the rootdir (*) and the ini file (*): write --results-root=../results"
        ]
    )
    if above == "pytest.ini" or pytest.version_tuple >= (8, 1):
        assert f"the ini file ({pytester.path / above})" in refused.stderr.str()
    assert list(results.iterdir()) == []
    pytester.runpytest("--results-root=../results").assert_outcomes(passed=8)
    assert len(list(results.iterdir())) == 1


def _can_unshare_mounts() -> bool:
    try:
        probe = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


#: Starts an xdist worker in a mount namespace of its own with an empty tmpfs over the
#: results root: a worker on a host without the shared filesystem.
HIDING_WRAPPER = """#!/bin/sh
exec unshare --mount --propagation private sh -c \\
  'mount -t tmpfs tmpfs "$HIDDEN_ROOT" && exec "$REAL_PYTHON" "$@"' sh "$@"
"""


@pytest.mark.xdist
@pytest.mark.skipif(not _can_unshare_mounts(), reason="mount namespaces are not permitted here")
def test_workers_that_cannot_see_the_results_root_leave_recording_to_the_controller(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_experiment(pytester, behaviour={"T1-01-1": "fail"})
    pytester.makeconftest(RECORDED_CONFTEST)
    results = pytester.path / "results"
    results.mkdir()
    wrapper = pytester.path / "hidden-python"
    wrapper.write_text(HIDING_WRAPPER)
    wrapper.chmod(0o755)
    monkeypatch.setenv("HIDDEN_ROOT", str(results))
    monkeypatch.setenv("REAL_PYTHON", sys.executable)
    probe = pytester.path / "worker-saw.txt"
    pytester.makepyfile(test_agent=AGENT_SEES_RESULTS.format(probe=str(probe)))

    result = pytester.runpytest("--tx", f"2*popen//python={wrapper}", "--dist", "load")
    result.assert_outcomes(passed=7, failed=1)
    # The workers ran in their own mount namespace: they did not see the experiment dir.
    assert probe.read_text().split() == ["hidden"] * 8
    experiment_dir = only_experiment_dir(pytester)
    recorded = statuses(experiment_dir)
    assert len(recorded) == 8
    assert recorded["T1/01/1"] == "failed"
    # Every run recorded once, its result file written by the controller on this side.
    assert len(_recorded(pytester)) == 8
    assert len(list(experiment_dir.glob("T*/*/run_*/run_result.json"))) == 8
    failed = _result(experiment_dir, "T1/01/1")["expresume"]
    assert isinstance(failed, dict)
    assert failed["status"] == "failed"


AGENT_SEES_RESULTS = """
def test_agent(experiment_run):
    # The controller saved the config before the workers started: is it there?
    saved = experiment_run.dir.parents[2] / "config" / "experiment.json"
    with open({probe!r}, "a") as log:
        log.write(("shared" if saved.exists() else "hidden") + "\\n")
    if experiment_run.key.test_id == "T1-01-run_01":
        assert False, "judges said no"
"""
