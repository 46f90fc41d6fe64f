"""Never lose a run: real kill -9, signals, concurrent sessions and writers.

The long kill -9 rounds are marked ``faults`` (run them with ``pytest -m faults``; CI does).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import hypothesis.strategies as st
import pytest
from expresume_testing import (
    AGENT_TEST,
    PYTEST_ARGS,
    XDIST,
    only_experiment_dir,
    pytest_command,
    statuses,
    write_experiment,
)
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pytest_expresume import CheckpointStore, RunKey, load_checkpoint

LOGGED_TEST = """
import os, time

def test_agent(experiment_run):
    run = experiment_run
    key = f"{run.tier}/{run.subtest}/{run.run}"
    with open(os.environ["EXEC_LOG"], "a") as log:
        log.write(f"{os.environ['ROUND']} start {key}\\n")
    time.sleep(float(os.environ.get("RUN_SECONDS", "0.03")))
    run.result["value"] = run.run
    with open(os.environ["EXEC_LOG"], "a") as log:
        log.write(f"{os.environ['ROUND']} end {key}\\n")
"""


def _popen(
    path: Path, round_no: int, *args: str, run_seconds: float = 0.03
) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        EXEC_LOG=str(path / "executions.log"),
        ROUND=str(round_no),
        RUN_SECONDS=str(run_seconds),
    )
    return subprocess.Popen(
        pytest_command("-q", *args),
        cwd=path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _result_files(experiment_dir: Path) -> dict[str, str]:
    """'T0/00/1' -> status, from the result files on disk."""
    found = {}
    for path in experiment_dir.glob("*/*/run_*/run_result.json"):
        tier, subtest, run_dir = path.parts[-4:-1]
        found[f"{tier}/{subtest}/{int(run_dir[4:])}"] = json.loads(path.read_text())["expresume"][
            "status"
        ]
    return found


def _log(path: Path) -> list[tuple[int, str, str]]:
    log = path / "executions.log"
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:  # a line cut by the kill is not an execution we can count
            rows.append((int(parts[0]), parts[1], parts[2]))
    return rows


@pytest.mark.faults
@pytest.mark.parametrize("xdist", [pytest.param([], id="in-process"), XDIST])
def test_kill_9_at_random_moments_loses_nothing_and_pays_for_nothing_twice(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    rng = random.Random(20261128 + len(xdist))
    tiers = ["T0", "T1", "T2", "T3"]
    subtests = [f"{i:02d}" for i in range(10)]
    write_experiment(pytester, tiers=tiers, subtests=subtests, runs_per_subtest=10)
    pytester.makepyfile(test_agent=LOGGED_TEST)
    everything = {f"{t}/{s}/{r}" for t in tiers for s in subtests for r in range(1, 11)}
    in_flight = 2 if xdist else 1
    # Slow enough that 30 kills land while runs are still left to do.
    run_seconds = 0.3 if xdist else 0.08
    done_before: dict[int, set[str]] = {}
    kills = 0
    mid_grid = 0  # kills that landed while runs were left to do
    round_no = 0

    while kills < 30 and round_no < 60:
        round_no += 1
        dirs = sorted((pytester.path / "results").glob("*"))
        done_before[round_no] = set(_result_files(dirs[0])) if dirs else set()
        proc = _popen(pytester.path, round_no, *xdist, run_seconds=run_seconds)
        time.sleep(rng.uniform(0.3, 3.0) if xdist else rng.uniform(0.2, 1.6))
        if proc.poll() is None:
            # The whole group, as an OOM killer or a lost node does; sometimes pytest alone.
            if xdist or rng.random() < 0.5:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
            kills += 1
            mid_grid += done_before[round_no] != everything
        proc.wait(timeout=60)
        experiment_dir = only_experiment_dir(pytester)
        # The index may lag the files, never lead them: every recorded run has its file.
        on_disk = _result_files(experiment_dir)
        recorded = {
            f"{k.tier}/{k.subtest}/{k.run}": v
            for k, v in load_checkpoint(experiment_dir).completed_runs.items()
        }
        assert {k: on_disk.get(k) for k in recorded} == recorded
        assert len(set(on_disk) - set(recorded)) <= in_flight

    final = _popen(pytester.path, 99, *xdist, run_seconds=0.0)
    assert final.wait(timeout=300) == 0
    experiment_dir = only_experiment_dir(pytester)

    assert kills >= 30, f"only {kills} of {round_no} rounds were killed mid-session"
    assert mid_grid >= 25, f"only {mid_grid} kills landed while runs were left"
    recorded = statuses(experiment_dir)
    assert set(recorded) == everything  # runs lost: 0
    assert set(recorded.values()) == {"passed"}
    assert _result_files(experiment_dir) == recorded
    executions = _log(pytester.path)
    rerun_after_done = [
        (round_no, key)
        for round_no, event, key in executions
        if event == "start" and key in done_before.get(round_no, set())
    ]
    assert rerun_after_done == []  # runs re-executed after a completed result file: 0
    completed = Counter(key for _, event, key in executions if event == "end")
    assert set(completed) == everything
    assert not list(experiment_dir.rglob("*.tmp-*")), "stale temp files were left behind"
    print(
        f"\nkill -9 rounds: {kills} ({mid_grid} with runs left); runs: {len(everything)}, "
        f"{len(done_before[round_no])} done before the last kill; lost: 0; "
        "re-executed after a completed result file: 0; "
        f"completed executions beyond one (runs in flight at a kill): "
        f"{sum(completed.values()) - len(everything)}"
    )


def test_second_session_is_refused_while_one_runs(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    pytester.makepyfile(
        test_agent="""
        import os, time

        def test_agent(experiment_run):
            open(os.environ.get("EXEC_LOG", "executions.log"), "a").write("started\\n")
            if experiment_run.key == ("T0", "00", 2) and os.environ.get("ROUND") == "1":
                time.sleep(60)
        """
    )
    first = _popen(pytester.path, 1)
    log = pytester.path / "executions.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().split()) < 2):
        time.sleep(0.05)
    try:
        second = pytester.runpytest(*PYTEST_ARGS)
        assert second.ret == pytest.ExitCode.USAGE_ERROR
        second.stderr.fnmatch_lines(
            [
                f"ERROR: expresume: * is in use by another pytest session (pid {first.pid} "
                "on host * since 20*): wait for it to finish or stop it*"
            ]
        )
        rebuild = pytester.runpytest(*PYTEST_ARGS, "--rebuild-checkpoint")
        assert rebuild.ret == pytest.ExitCode.USAGE_ERROR
        status = pytester.runpytest(*PYTEST_ARGS, "--experiment-status")
        assert status.ret == pytest.ExitCode.OK
        status.stdout.fnmatch_lines([f"a session is running now: pid {first.pid} on host *"])
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)

    # The OS released the dead session's lock: the next session just runs.
    after = pytester.runpytest(*PYTEST_ARGS)
    assert after.ret == pytest.ExitCode.OK
    after.stdout.fnmatch_lines(["expresume: the checkpoint says 'running': an earlier session*"])
    assert set(statuses(only_experiment_dir(pytester)).values()) == {"passed"}


APPENDER = """
import sys
from pathlib import Path
from pytest_expresume import CheckpointStore, RunKey

store = CheckpointStore(Path(sys.argv[1]), fsync=False)
for run in range(int(sys.argv[2]), 10**9):
    store.record(RunKey("T0", "00", run), "passed")
    print(run, flush=True)  # acknowledged
"""


def test_writer_killed_mid_append_loses_no_acknowledged_record(tmp_path: Path) -> None:
    from pytest_expresume import Checkpoint

    CheckpointStore(tmp_path).create(Checkpoint("x", str(tmp_path), "sha256:x"))
    script = tmp_path / "appender.py"
    script.write_text(APPENDER)
    acknowledged: set[int] = set()
    rng = random.Random(7)
    start = 1
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        # Killed while it appends, not while Python starts (slow on a loaded machine).
        first = proc.stdout.readline()
        time.sleep(rng.uniform(0.1, 0.5))
        proc.kill()
        out, _ = proc.communicate()
        acknowledged |= {int(line) for line in (first + out).split()}
        loaded = {k.run for k in load_checkpoint(tmp_path).completed_runs}
        assert acknowledged <= loaded
        start = max(loaded | acknowledged) + 1
    assert len(acknowledged) > 100


class StoreMachine(RuleBasedStateMachine):
    """record, kill mid-append, garbage tail, compact, reopen: load() equals what was acked."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        from pytest_expresume import Checkpoint

        self.dir = Path(tempfile.mkdtemp())
        CheckpointStore(self.dir).create(Checkpoint("m", str(self.dir), "sha256:m"))
        self.store = CheckpointStore(self.dir, fsync=False)
        self.model: dict[RunKey, str] = {}
        self.experiment_status = "running"

    keys = st.builds(
        RunKey, st.sampled_from(["T0", "T1"]), st.sampled_from(["00", "01"]), st.integers(1, 5)
    )
    run_statuses = st.sampled_from(["passed", "failed", "error", "skipped"])

    @rule(key=keys, status=run_statuses)
    def record(self, key: RunKey, status: str) -> None:
        self.store.record(key, status)  # type: ignore[arg-type]
        self.model[key] = status

    @rule(key=keys, cut=st.integers(1, 40))
    def killed_mid_append(self, key: RunKey, cut: int) -> None:
        line = json.dumps({"tier": key.tier, "subtest": key.subtest, "run": key.run})
        with open(self.dir / "checkpoint.journal", "ab") as journal:
            journal.write(line.encode()[:cut])  # never acknowledged

    @rule(garbage=st.binary(min_size=1, max_size=30).filter(lambda b: b"\n" not in b))
    def garbage_tail(self, garbage: bytes) -> None:
        with open(self.dir / "checkpoint.journal", "ab") as journal:
            journal.write(garbage)

    @rule(status=st.sampled_from(["running", "interrupted", "completed"]))
    def set_status(self, status: str) -> None:
        self.store.set_status(status)  # type: ignore[arg-type]
        self.experiment_status = status

    @rule()
    def compact(self) -> None:
        self.store.compact()

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = CheckpointStore(self.dir, fsync=False)

    @invariant()
    def load_equals_acknowledged(self) -> None:
        with CheckpointStore(self.dir) as reader:
            checkpoint = reader.load()
        assert checkpoint.completed_runs == self.model
        assert checkpoint.status == self.experiment_status

    def teardown(self) -> None:
        self.store.close()


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_a_killed_sessions_running_status_is_reported_and_nothing_lost(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester, runs_per_subtest=3)
    pytester.makepyfile(test_agent=AGENT_TEST)
    pytester.runpytest("-k", "T0")
    experiment_dir = only_experiment_dir(pytester)
    before = statuses(experiment_dir)
    # Simulate a session killed mid-run: the checkpoint still says running.
    with CheckpointStore(experiment_dir) as store:
        store.set_status("running")
    result = pytester.runpytest_inprocess("-x", no_reraise_ctrlc=True)
    result.stdout.fnmatch_lines(["expresume: the checkpoint says 'running'*"])
    after = statuses(experiment_dir)
    assert {k: after[k] for k in before} == before
    assert len(after) == 12


def test_stale_temp_files_of_a_killed_writer_are_cleaned_up(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=2)
    pytester.makepyfile(test_agent=AGENT_TEST)
    pytester.runpytest("-k", "run_01").assert_outcomes(passed=1, deselected=1)
    experiment_dir = only_experiment_dir(pytester)
    # What a writer killed between creating and renaming its temp files leaves behind.
    leftovers = [
        experiment_dir / ".checkpoint.json.tmp-999999-0",
        experiment_dir / "config" / ".experiment.json.tmp-999999-3",
    ]
    run_dir = experiment_dir / "T0" / "00" / "run_02"
    run_dir.mkdir(parents=True)
    leftovers.append(run_dir / ".run_result.json.tmp-999999-7")
    for path in leftovers:
        path.write_bytes(b'{"half": ')

    pytester.runpytest().assert_outcomes(passed=1, deselected=1)
    assert [p for p in leftovers if p.exists()] == []
    assert not list(experiment_dir.rglob("*.tmp-*"))
    assert statuses(experiment_dir) == {"T0/00/1": "passed", "T0/00/2": "passed"}
