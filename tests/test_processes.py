"""Real processes: pytest-xdist, Ctrl+C (SIGINT to the process group) and SIGTERM.

The xdist sessions run their controller in this process (pytester's in-process route, as
xdist's own tests do): the workers are processes of their own either way. A session that
is sent a signal runs in a process group of its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from expresume_testing import (
    PYTEST_ARGS,
    XDIST,
    checkpoint_json,
    executions,
    journal_records,
    only_experiment_dir,
    pytest_command,
    statuses,
    write_experiment,
)

from pytest_expresume import CheckpointStore

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


@pytest.fixture(autouse=True)
def _exec_log(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the test bodies log the runs they start, for every session and xdist worker."""
    monkeypatch.setenv("EXEC_LOG", str(pytester.path / "executions.log"))


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*PYTEST_ARGS, *args)


def _output(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


@pytest.mark.xdist
@pytest.mark.parametrize("workers", ["2", "4"])
def test_xdist_records_every_run_once_and_resumes_alike(
    pytester: pytest.Pytester, workers: str
) -> None:
    write_experiment(pytester, runs_per_subtest=3, behaviour={"T0-01-2": "error"})
    first = _run(pytester, "-n", workers)
    assert first.ret == 1, _output(first)
    assert "11 passed" in first.stdout.str()
    experiment_dir = only_experiment_dir(pytester)
    recorded = statuses(experiment_dir)
    assert len(recorded) == 12
    assert recorded["T0/01/2"] == "error"
    assert checkpoint_json(experiment_dir)["status"] == "interrupted"
    assert journal_records(experiment_dir) == []  # folded into checkpoint.json at session end

    # Every worker deselects from the same snapshot: only the error run runs again.
    second = _run(pytester, "-n", workers, "--dist", "loadscope")
    assert second.ret == 1, _output(second)
    assert "1 failed" in second.stdout.str()
    assert "11 deselected" in second.stdout.str()
    assert sorted(executions(pytester)).count("T0/01/2") == 2
    assert len(executions(pytester)) == 13


COUNTING_WRITES = """
import os
import pytest_expresume.recording as recording

_write = recording.write_result_file

def _counted(experiment_dir, key, *args, **kwargs):
    with open(os.environ["WRITES_LOG"], "a") as log:
        log.write(f"{os.getpid()} {key.tier}/{key.subtest}/{key.run}\\n")
    return _write(experiment_dir, key, *args, **kwargs)

recording.write_result_file = _counted
"""


@pytest.mark.xdist
def test_under_xdist_each_result_file_is_written_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written by the worker that ran the run; the controller writes none of them again.
    write_experiment(pytester)
    pytester.makeconftest(COUNTING_WRITES)
    log = pytester.path / "writes.log"
    monkeypatch.setenv("WRITES_LOG", str(log))
    pytester.runpytest_subprocess(*PYTEST_ARGS, "-n", "2").assert_outcomes(passed=8)
    writes = [line.split() for line in log.read_text().splitlines()]
    runs = [run for _, run in writes]
    assert len(runs) == 8, writes
    assert len(set(runs)) == 8, writes


@pytest.mark.xdist
def test_xdist_resume_of_a_finished_experiment_exits_0(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    assert _run(pytester, "-n", "2").ret == 0
    again = _run(pytester, "-n", "2")
    assert again.ret == 0, _output(again)
    assert "all 8 runs done, nothing to run" in again.stdout.str()


def _start(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        pytest_command(*args),
        cwd=pytester.path,
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
@pytest.mark.parametrize("xdist", [pytest.param([], id="in-process"), XDIST])
def test_signal_marks_interrupted_and_keeps_recorded_runs(
    pytester: pytest.Pytester, sig: signal.Signals, xdist: list[str]
) -> None:
    write_experiment(pytester)
    pytester.makepyfile(test_agent=HANG_TEST)
    proc = _start(pytester, *xdist)
    _wait_for_run(pytester.path / "executions.log", "T1/00/1", proc)
    if xdist:
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
    assert resumed.ret == 0, _output(resumed)
    final = statuses(experiment_dir)
    assert sorted(final) == ALL_RUNS
    assert checkpoint_json(experiment_dir)["status"] == "completed"
    ran_again = [r for r in executions(pytester)[len(started_before) :] if r in recorded]
    assert ran_again == []  # no recorded run was paid for twice


@pytest.mark.xdist
def test_crashed_xdist_worker_run_is_an_error_and_runs_again(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    assert first.ret == 1, _output(first)
    experiment_dir = only_experiment_dir(pytester)
    recorded = statuses(experiment_dir)
    assert recorded["T0/01/2"] == "error"
    assert sorted(recorded) == ALL_RUNS
    crash = (experiment_dir / "T0/01/run_02/run_result.json").read_text()
    assert '"status": "error"' in crash

    monkeypatch.setenv("NO_CRASH", "1")
    second = _run(pytester, "-n", "2")
    assert second.ret == 0, _output(second)
    assert "1 passed" in second.stdout.str()
    assert statuses(experiment_dir)["T0/01/2"] == "passed"


def test_a_dead_session_is_reported_and_the_next_start_marks_it_interrupted(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester)
    pytester.makepyfile(test_agent=HANG_TEST)
    proc = _start(pytester)
    _wait_for_run(pytester.path / "executions.log", "T1/00/1", proc)
    os.killpg(proc.pid, signal.SIGKILL)  # what the OOM killer does: no handler runs
    proc.communicate(timeout=60)
    experiment_dir = only_experiment_dir(pytester)
    assert checkpoint_json(experiment_dir)["status"] == "running"  # as the kill left it
    # fsync on (the default): each record followed its flushed file and says so, so the
    # next start has no file of the dead session to read back.
    recorded = [json.loads(line) for line in journal_records(experiment_dir)]
    runs = [record for record in recorded if "run" in record]
    assert len(runs) >= 4
    assert all(record["flushed"] is True for record in runs)
    with CheckpointStore(experiment_dir) as store:
        assert store.load().recorded_since_clean_end == set()

    status = _run(pytester, "--experiment-status")
    assert status.ret == 0, _output(status)
    # The journal's records are newer than checkpoint.json: the status names the update
    # of the two together, as a load replays them.
    with CheckpointStore(experiment_dir) as store:
        last_update = store.load().last_updated_at
    status.stdout.fnmatch_lines(
        [
            f"state: interrupted (its session died: pid {proc.pid}, "
            f"host {socket.gethostname()}, last update {last_update})"
        ]
    )
    assert "a session is running now" not in status.stdout.str()

    # A start with nothing to run (the T0 runs are done, -k leaves only them).
    nothing = _run(pytester, "-k", "T0")
    assert nothing.ret == 0, _output(nothing)
    assert executions(pytester).count("T0/00/1") == 1  # nothing ran again
    assert checkpoint_json(experiment_dir)["status"] == "interrupted"
    after = _run(pytester, "--experiment-status")
    after.stdout.fnmatch_lines(["state: interrupted, last update *"])
    assert "its session died" not in after.stdout.str()


def test_after_a_session_died_runs_whose_result_files_are_not_whole_run_again(
    pytester: pytest.Pytester,
) -> None:
    """What a power cut with fsync off can leave: the index lists runs whose result files
    the kernel never wrote. The next start checks what the dead session recorded."""
    write_experiment(pytester)
    pytester.makeini("[pytest]\nexpresume_config = experiment.json\nexpresume_fsync = false\n")
    pytester.makepyfile(test_agent=HANG_TEST)
    proc = _start(pytester)
    _wait_for_run(pytester.path / "executions.log", "T1/00/1", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    experiment_dir = only_experiment_dir(pytester)
    with CheckpointStore(experiment_dir, fsync=False) as store:
        listed = store.load()
    assert listed.status == "running"
    assert len(listed.completed_runs) == 4  # the T0 runs, recorded by the dead session
    # The power cut: one result file empty, one never written.
    (experiment_dir / "T0/00/run_02/run_result.json").write_bytes(b"")
    (experiment_dir / "T0/01/run_01/run_result.json").unlink()
    before = executions(pytester)

    pytester.makepyfile(test_agent=HANG_TEST.replace("time.sleep(60)", "pass"))
    resumed = _run(pytester)
    assert resumed.ret == 0, _output(resumed)
    resumed.stdout.fnmatch_lines(
        [
            "expresume: resuming demo at *: 2 of 8 runs done, 6 to run",
            "expresume: 2 runs the checkpoint listed as done have no whole result file (a "
            "power cut after a session died?): they run again: T0-00-run_02, T0-01-run_01",
        ]
    )
    again = executions(pytester)[len(before) :]
    assert sorted(again) == ["T0/00/2", "T0/01/1", "T1/00/1", "T1/00/2", "T1/01/1", "T1/01/2"]
    assert sorted(statuses(experiment_dir)) == ALL_RUNS
    assert checkpoint_json(experiment_dir)["status"] == "completed"
    assert "recorded_since_clean_end" not in checkpoint_json(experiment_dir)  # a clean end
    # Checked once: the next start has nothing to check and nothing to run.
    quiet = _run(pytester)
    assert "no whole result file" not in quiet.stdout.str()
