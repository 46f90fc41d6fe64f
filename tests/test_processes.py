"""Real processes: pytest-xdist, Ctrl+C (SIGINT to the process group) and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from expresume_testing import (
    checkpoint_json,
    executions,
    only_experiment_dir,
    statuses,
    write_experiment,
)

HANG_TEST = """
import os, pathlib, time

def test_agent(experiment_run):
    run = experiment_run
    with open(pathlib.Path(os.environ["EXEC_LOG"]), "a") as log:
        log.write(f"{run.tier}/{run.subtest}/{run.run}\\n")
    if (run.tier, run.subtest, run.run) == ("T1", "00", 1):
        time.sleep(60)
"""

ALL_RUNS = sorted(f"{t}/{s}/{r}" for t in ("T0", "T1") for s in ("00", "01") for r in (1, 2))


def _run(pytester: pytest.Pytester, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EXEC_LOG=str(pytester.path / "executions.log"))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("workers", ["2", "4"])
def test_xdist_records_every_run_once_and_resumes_alike(
    pytester: pytest.Pytester, workers: str
) -> None:
    write_experiment(pytester, runs_per_subtest=3, behaviour={"T0-01-2": "error"})
    first = _run(pytester, "-n", workers)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "11 passed" in first.stdout
    experiment_dir = only_experiment_dir(pytester)
    recorded = statuses(experiment_dir)
    assert len(recorded) == 12
    assert recorded["T0/01/2"] == "error"
    assert checkpoint_json(experiment_dir)["status"] == "interrupted"
    journal = experiment_dir / "checkpoint.journal"
    assert journal.read_bytes() == b""  # folded into checkpoint.json at session end

    # Every worker deselects from the same snapshot: only the error run runs again.
    second = _run(pytester, "-n", workers, "--dist", "loadscope")
    assert second.returncode == 1, second.stdout + second.stderr
    assert "1 failed" in second.stdout
    assert "11 deselected" in second.stdout
    assert sorted(executions(pytester)).count("T0/01/2") == 2
    assert len(executions(pytester)) == 13


def test_xdist_resume_of_a_finished_experiment_exits_0(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    assert _run(pytester, "-n", "2").returncode == 0
    again = _run(pytester, "-n", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "all 8 runs done, nothing to run" in again.stdout


def _start(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, EXEC_LOG=str(pytester.path / "executions.log"))
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for_run(log: Path, run: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and run in log.read_text().split():
            return
        if proc.poll() is not None:
            pytest.fail(f"pytest ended before {run} started: {proc.communicate()[0]}")
        time.sleep(0.05)
    pytest.fail(f"{run} never started")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["in-process", "xdist"])
def test_signal_marks_interrupted_and_keeps_recorded_runs(
    pytester: pytest.Pytester, sig: signal.Signals, xdist: list[str]
) -> None:
    write_experiment(pytester)
    pytester.makepyfile(test_agent=HANG_TEST)
    proc = _start(pytester, *xdist)
    _wait_for_run(pytester.path / "executions.log", "T1/00/1", proc)
    time.sleep(0.5)  # let the other worker finish what it holds
    # A terminal's Ctrl+C reaches the whole process group; a scheduler signals the group too.
    os.killpg(proc.pid, sig)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output

    experiment_dir = only_experiment_dir(pytester)
    assert checkpoint_json(experiment_dir)["status"] == "interrupted"
    recorded = statuses(experiment_dir)
    assert "T1/00/1" not in recorded  # the run in flight is not recorded
    assert (experiment_dir / "T1/00/run_01").is_dir()  # ...but its dir stays
    assert set(recorded.values()) <= {"passed"}
    started_before = set(executions(pytester))
    # Everything that has a result file is recorded: nothing finished was dropped.
    on_disk = {
        f"{p.parts[-4]}/{p.parts[-3]}/{int(p.parts[-2][4:])}"
        for p in experiment_dir.glob("*/*/run_*/run_result.json")
    }
    assert on_disk == set(recorded)

    pytester.makepyfile(test_agent=HANG_TEST.replace("time.sleep(60)", "pass"))
    resumed = _run(pytester)
    assert resumed.returncode == 0, resumed.stdout
    final = statuses(experiment_dir)
    assert sorted(final) == ALL_RUNS
    assert checkpoint_json(experiment_dir)["status"] == "completed"
    ran_again = [r for r in executions(pytester)[len(started_before) :] if r in recorded]
    assert ran_again == []  # no recorded run was paid for twice


def test_crashed_xdist_worker_run_is_an_error_and_runs_again(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    pytester.makepyfile(
        test_agent="""
        import os

        def test_agent(experiment_run):
            if experiment_run.key == ("T0", "01", 2) and not os.environ.get("NO_CRASH"):
                os._exit(3)  # the worker dies: an OOM kill looks like this
        """
    )
    first = _run(pytester, "-n", "2")
    assert first.returncode == 1, first.stdout
    experiment_dir = only_experiment_dir(pytester)
    recorded = statuses(experiment_dir)
    assert recorded["T0/01/2"] == "error"
    assert sorted(recorded) == ALL_RUNS
    crash = (experiment_dir / "T0/01/run_02/run_result.json").read_text()
    assert '"status": "error"' in crash

    os.environ["NO_CRASH"] = "1"
    try:
        second = _run(pytester, "-n", "2")
    finally:
        del os.environ["NO_CRASH"]
    assert second.returncode == 0, second.stdout
    assert "1 passed" in second.stdout
    assert statuses(experiment_dir)["T0/01/2"] == "passed"
