"""Faults of the machine: paths the plugin cannot use, a disk that fills while runs are
recorded. Each case ends in one clear message and loses no recorded run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest
from expresume_testing import (
    PYTEST_ARGS,
    XDIST,
    checkpoint_json,
    only_experiment_dir,
    snapshot_tree,
    statuses,
    write_experiment,
)

from pytest_expresume import CheckpointStore

NOBODY = 65534


def test_a_results_root_that_cannot_be_created_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester)
    result = pytester.runpytest(*PYTEST_ARGS, "--results-root=/proc/nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    # /proc is there; /proc/nope is what cannot be made, and the message says so.
    result.stderr.fnmatch_lines(
        [
            "ERROR: expresume: cannot create the experiment dir /proc/nope/*-demo: "
            "/proc/nope: No such file or directory"
        ]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_file_in_the_way_of_the_results_root_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    write_experiment(pytester)
    pytester.path.joinpath("results").write_text("not a dir")
    before = snapshot_tree(pytester.path)
    result = pytester.runpytest(*PYTEST_ARGS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: expresume: the results root */results is not a directory"])
    assert snapshot_tree(pytester.path) == before


# -- as an ordinary user: root passes every permission check ---------------------------------


def _can_switch_user() -> bool:
    """Root, setpriv, and a Python the ordinary user can run (one built with a shared
    libpython under /root cannot be)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(
        [
            *("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"),
            *(sys.executable, "-c", "import pytest_expresume"),
        ],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


needs_user_switch = pytest.mark.skipif(
    not _can_switch_user(),
    reason="needs root, setpriv and a Python an ordinary user can run (uid 65534)",
)


@pytest.fixture
def project() -> Iterator[Path]:
    """An experiment project an ordinary user may enter (pytester's dirs are root's own)."""
    path = Path(tempfile.mkdtemp(prefix="expresume-perm-"))
    path.chmod(0o777)
    (path / "experiment.json").write_text(
        '{"experiment_id": "demo", "tiers": ["T0"], "subtests": ["00", "01"], '
        '"runs_per_subtest": 2}'
    )
    (path / "pytest.ini").write_text("[pytest]\nexpresume_config = experiment.json\n")
    (path / "test_agent.py").write_text(
        "def test_agent(experiment_run):\n    experiment_run.result['score'] = 1.0\n"
    )
    yield path
    shutil.rmtree(path)


def _as_nobody(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            sys.executable,
            "-m",
            "pytest",
            *PYTEST_ARGS,
            *args,
        ],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(project)},
        check=False,
    )


def _one_usage_error(done: subprocess.CompletedProcess[str], message: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "Traceback" not in output, output
    assert "INTERNALERROR" not in output, output
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, output
    assert fnmatch(errors[0], "ERROR: expresume: " + message), errors[0]


@needs_user_switch
def test_an_unreadable_checkpoint_is_one_usage_error_for_a_session_and_the_status(
    project: Path,
) -> None:
    first = _as_nobody(project)
    assert first.returncode == 0, first.stdout + first.stderr
    experiment_dir = next((project / "results").iterdir())
    (experiment_dir / "checkpoint.json").chmod(0o000)
    before = snapshot_tree(experiment_dir)

    status = _as_nobody(project, "--experiment-status")
    _one_usage_error(status, "cannot read the experiment: */checkpoint.json: Permission denied")
    session = _as_nobody(project, "--rerun=passed")
    _one_usage_error(session, "cannot open the experiment: */checkpoint.json: Permission denied")
    assert snapshot_tree(experiment_dir) == before


@needs_user_switch
def test_a_read_only_experiment_dir_is_a_usage_error_before_any_run(project: Path) -> None:
    first = _as_nobody(project, "-k", "T0-00")
    assert first.returncode == 0, first.stdout + first.stderr
    experiment_dir = next((project / "results").iterdir())
    experiment_dir.chmod(0o555)  # read-only for its owner, nobody
    try:
        resumed = _as_nobody(project)
        _one_usage_error(
            resumed, f"cannot use the experiment dir: {experiment_dir}: Permission denied"
        )
        assert "T0-01" not in resumed.stdout  # no run started
    finally:
        experiment_dir.chmod(0o755)
    again = _as_nobody(project)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 of 4 runs done, 2 to run" in again.stdout


@needs_user_switch
def test_a_results_root_the_user_cannot_write_is_a_usage_error(project: Path) -> None:
    (project / "results").mkdir(mode=0o755)  # root's own: nobody cannot write in it
    before = snapshot_tree(project)
    done = _as_nobody(project)
    _one_usage_error(
        done, f"cannot create the experiment dir {project}/results/*-demo: Permission denied"
    )
    assert snapshot_tree(project) == before


@needs_user_switch
@pytest.mark.parametrize("blocked", ["T0", "T0/00"], ids=["tier-dir", "subtest-dir"])
def test_a_tier_or_subtest_dir_the_user_cannot_write_is_a_usage_error_before_any_run(
    project: Path, blocked: str
) -> None:
    first = _as_nobody(project, "-k", "T0-00-run_01")
    assert first.returncode == 0, first.stdout + first.stderr
    experiment_dir = next((project / "results").iterdir())
    # As a `sudo pytest` leaves it: root's own, others may only read. Run 2 of T0/00 and
    # both runs of T0/01 would be made in it.
    blocked_dir = experiment_dir / blocked
    os.chown(blocked_dir, 0, 0)
    blocked_dir.chmod(0o755)
    before = snapshot_tree(experiment_dir)

    resumed = _as_nobody(project)
    _one_usage_error(resumed, f"cannot use the experiment dir: {blocked_dir}: Permission denied")
    assert "run_0" not in resumed.stdout  # no run started
    assert snapshot_tree(experiment_dir) == before

    os.chown(blocked_dir, NOBODY, NOBODY)
    again = _as_nobody(project)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 of 4 runs done, 3 to run" in again.stdout


@needs_user_switch
def test_projectscyllas_completed_dirs_and_the_users_own_need_not_be_writable(
    project: Path,
) -> None:
    first = _as_nobody(project, "-k", "T0-00")
    assert first.returncode == 0, first.stdout + first.stderr
    experiment_dir = next((project / "results").iterdir())
    # Another tool's finished runs, root's own: this plugin only reads them.
    for root in ("completed", "in_progress"):
        (experiment_dir / root / "T0" / "01").mkdir(parents=True, mode=0o755)
    # A dir of the user's that no tier is named after: none of the plugin's business.
    (experiment_dir / "plots" / "T0").mkdir(parents=True, mode=0o755)
    resumed = _as_nobody(project)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "2 of 4 runs done, 2 to run" in resumed.stdout


# -- disk full while recording ------------------------------------------------------------------

FILLING_TEST = """
import os, pathlib

def test_agent(experiment_run):
    run = experiment_run
    with open(pathlib.Path(os.environ["EXEC_LOG"]), "a") as log:
        log.write(f"{run.tier}/{run.subtest}/{run.run}\\n")
    run.result["transcript"] = "x" * 60_000  # a real transcript is this size and more
"""


def _recorded(experiment_dir: Path) -> dict[str, str]:
    """'T0/00/1' -> status, as the checkpoint holds it (its journal replayed)."""
    with CheckpointStore(experiment_dir, fsync=False) as store:
        completed = store.load().completed_runs
    return {f"{k.tier}/{k.subtest}/{k.run}": status for k, status in completed.items()}


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.mark.parametrize("xdist", [pytest.param([], id="in-process"), XDIST])
def test_a_full_disk_stops_the_session_and_loses_no_recorded_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    results = pytester.path / "results"
    if not _mount_tmpfs(results, "256k"):
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        write_experiment(pytester)  # 8 runs of 60 kB on 256 kB: the disk fills mid-grid
        pytester.makepyfile(test_agent=FILLING_TEST)
        log = pytester.path / "executions.log"
        monkeypatch.setenv("EXEC_LOG", str(log))

        full = pytester.runpytest_subprocess(*PYTEST_ARGS, *xdist)
        output = "\n".join(full.outlines + full.errlines)
        assert full.ret == pytest.ExitCode.INTERRUPTED, output  # never pytest's 3
        assert "INTERNALERROR" not in output
        full.stdout.fnmatch_lines(
            [
                "*expresume: cannot record run T?-0?-run_0? (test_agent.py::test_agent[[]*]): "
                "*: No space left on device; the session stops, no further run starts*"
            ]
        )
        experiment_dir = only_experiment_dir(pytester)
        recorded = _recorded(experiment_dir)
        started = log.read_text().split()
        assert 0 < len(recorded) < 8
        assert set(recorded.values()) == {"passed"}
        for run in recorded:  # every earlier record stays whole and readable
            tier, subtest, number = run.split("/")
            saved = experiment_dir / tier / subtest / f"run_{int(number):02d}" / "run_result.json"
            assert json.loads(saved.read_text())["transcript"] == "x" * 60_000
        on_disk = {
            f"{p.parts[-4]}/{p.parts[-3]}/{int(p.parts[-2][4:])}"
            for p in experiment_dir.glob("*/*/run_*/run_result.json")
        }
        assert set(recorded) <= on_disk
        paid_and_unsaved = [run for run in started if run not in on_disk]
        if not xdist:
            # The run whose result could not be saved was the last to start.
            assert paid_and_unsaved == [started[-1]], (started, on_disk)
        else:
            # Each of the two workers ran at most the run whose result it could not save.
            assert 1 <= len(paid_and_unsaved) <= 2, (started, on_disk)

        subprocess.run(["mount", "-o", "remount,size=4m", str(results)], check=True)
        resumed = pytester.runpytest_subprocess(*PYTEST_ARGS, *xdist)
        assert resumed.ret == pytest.ExitCode.OK, "\n".join(resumed.outlines + resumed.errlines)
        assert len(statuses(experiment_dir)) == 8
        assert checkpoint_json(experiment_dir)["status"] == "completed"
        ran_again = log.read_text().split()[len(started) :]
        assert not set(ran_again) & on_disk  # no saved run was paid for twice
    finally:
        subprocess.run(["umount", str(results)], check=False)


STEP_FILLING_TEST = """
import os, pathlib

def agent(run):
    with open(pathlib.Path(os.environ["EXEC_LOG"]), "a") as log:
        log.write(f"{run.tier}/{run.subtest}/{run.run}\\n")
    return "y" * 60_000  # the paid-for answer, saved as the step's value

def test_agent(experiment_run):
    answer = experiment_run.step("agent", agent, experiment_run)
    experiment_run.result["score"] = len(answer)
"""


@pytest.mark.parametrize("xdist", [pytest.param([], id="in-process"), XDIST])
def test_a_full_disk_while_a_step_saves_its_value_stops_the_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    results = pytester.path / "results"
    if not _mount_tmpfs(results, "256k"):
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        write_experiment(pytester)  # 8 runs, each step value 60 kB, on 256 kB
        pytester.makepyfile(test_agent=STEP_FILLING_TEST)
        log = pytester.path / "executions.log"
        monkeypatch.setenv("EXEC_LOG", str(log))

        full = pytester.runpytest_subprocess(*PYTEST_ARGS, *xdist)
        output = "\n".join(full.outlines + full.errlines)
        assert full.ret not in (pytest.ExitCode.OK, pytest.ExitCode.INTERNAL_ERROR), output
        assert "INTERNALERROR" not in output
        full.stdout.fnmatch_lines(
            [
                "*expresume: cannot save step 'agent' of T?-0?-run_0?: */steps/agent.json*: "
                "No space left on device; the run is an error and no further run starts*"
            ]
        )
        experiment_dir = only_experiment_dir(pytester)
        started = log.read_text().split()
        saved = {
            f"{p.parts[-5]}/{p.parts[-4]}/{int(p.parts[-3][4:])}"
            for p in experiment_dir.glob("*/*/run_*/steps/agent.json")
        }
        assert 0 < len(saved) < 8
        unsaved = [run for run in started if run not in saved]
        # Each process running tests paid for at most the one answer it could not save.
        assert 1 <= len(unsaved) <= (2 if xdist else 1), (started, saved)

        subprocess.run(["mount", "-o", "remount,size=4m", str(results)], check=True)
        resumed = pytester.runpytest_subprocess(*PYTEST_ARGS, *xdist)
        assert resumed.ret == pytest.ExitCode.OK, "\n".join(resumed.outlines + resumed.errlines)
        assert set(statuses(experiment_dir).values()) == {"passed"}
        assert len(statuses(experiment_dir)) == 8
        ran_again = log.read_text().split()[len(started) :]
        assert not set(ran_again) & saved  # a saved answer is reused, never paid twice
    finally:
        subprocess.run(["umount", str(results)], check=False)


def test_a_disk_full_before_the_first_run_stops_the_session_before_any_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = pytester.path / "results"
    if not _mount_tmpfs(results, "64k"):
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        write_experiment(pytester)
        pytester.makepyfile(test_agent=FILLING_TEST)
        log = pytester.path / "executions.log"
        monkeypatch.setenv("EXEC_LOG", str(log))
        filler = results / "filler"
        # Fill it, as other jobs on a shared disk do (dd stops at ENOSPC).
        filled = subprocess.run(
            ["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True, check=False
        )
        assert b"No space left" in filled.stderr
        full = pytester.runpytest_subprocess(*PYTEST_ARGS)
        output = "\n".join(full.outlines + full.errlines)
        assert full.ret == pytest.ExitCode.INTERRUPTED, output
        assert "INTERNALERROR" not in output
        full.stdout.fnmatch_lines(
            ["*expresume: cannot start recording: */results/*-demo*: No space left on device*"]
        )
        assert not log.exists()  # no run was paid for

        filler.unlink()
        subprocess.run(["mount", "-o", "remount,size=4m", str(results)], check=True)
        resumed = pytester.runpytest_subprocess(*PYTEST_ARGS)
        resumed.assert_outcomes(passed=8)
    finally:
        subprocess.run(["umount", str(results)], check=False)


def test_an_experiment_that_cannot_be_closed_ends_with_exit_2_and_keeps_its_runs(
    pytester: pytest.Pytester,
) -> None:
    """The disk fills between the last run and the session's end: the end is no clean one."""
    write_experiment(pytester)
    pytester.makeconftest(
        """
        import errno
        from pytest_expresume import store

        def full(self, status_of):
            raise OSError(errno.ENOSPC, "No space left on device", str(self.checkpoint_path))

        store.CheckpointStore.end_session = full
        """
    )
    result = pytester.runpytest_subprocess(*PYTEST_ARGS)
    output = "\n".join(result.outlines + result.errlines)
    assert result.ret == pytest.ExitCode.INTERRUPTED, output
    assert "INTERNALERROR" not in output
    result.stdout.fnmatch_lines(
        [
            "expresume: the experiment could not be closed: */checkpoint.json: No space left "
            "on device (the recorded runs are kept; the next start marks it interrupted)"
        ]
    )
    assert len(_recorded(only_experiment_dir(pytester))) == 8  # in the journal, all of them
