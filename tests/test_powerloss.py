"""Power cuts on LazyFS: a FUSE filesystem that keeps unsynced writes in its own cache and
drops them on command, as a power cut drops the kernel's unsynced pages.

Each cut: kill -9 of the session's process group, ``lazyfs::clear-cache``, unmount, mount.
Cuts land at random moments and at aimed points (a conftest of the experiment project parks
the session at a named place: right after a run is recorded, between a compaction's
snapshot and its journal, after the session's last compaction; nothing in the plugin).
Then the experiment is resumed to the end and checked: with ``expresume_fsync`` on, no
recorded run is lost or paid twice; in both modes it resumes, ends ``completed``, and every
run its index lists as done has a whole result file.

Marked ``powerloss`` (``pytest -m powerloss``; CI runs it). Needs root, /dev/fuse and the
LazyFS build script of ``../shared/tools/lazyfs/``; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from expresume_testing import PYTEST_ARGS

from pytest_expresume import CheckpointStore
from pytest_expresume.layout import find_experiment_dirs

pytestmark = pytest.mark.powerloss

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO.parent / "shared" / "tools" / "lazyfs" / "build.sh"
LAZYFS_BUILD_DIR = Path("/tmp/expresume-lazyfs")

TIERS, SUBTESTS, RUNS = ["T0", "T1"], ["00", "01", "02", "03", "04"], 4
ALL_RUNS = {f"{t}/{s}/{r}" for t in TIERS for s in SUBTESTS for r in range(1, RUNS + 1)}

AGENT = """
import os, random, time

def test_agent(experiment_run):
    run = experiment_run
    with open(os.environ["POWERLOSS_LOG"], "a") as log:
        log.write(f"start {run.tier}/{run.subtest}/{run.run}\\n")
    (run.dir / "transcript.txt").write_text("agent said things " * 50)
    time.sleep(random.uniform(0.0, 0.03))
    run.result["score"] = run.run / 10
"""

#: Where a session parks for a cut, chosen by POWERLOSS_PARK (the plugin knows nothing of it).
PARKING = """
import os, time
import pytest
from pytest_expresume import store as store_module

LOG = os.environ["POWERLOSS_LOG"]
PARK = os.environ.get("POWERLOSS_PARK", "")
ending = False

def _park(where):
    with open(LOG, "a") as log:
        log.write(f"parked {where}\\n")
    time.sleep(120)

def pytest_expresume_run_recorded(config, record):
    key = record.key
    with open(LOG, "a") as log:
        log.write(f"recorded {key.tier}/{key.subtest}/{key.run}\\n")
    if ":" in PARK:
        with open(LOG) as log:
            recorded = sum(1 for line in log if line.startswith("recorded "))
        if recorded == int(PARK.split(":")[1]):
            if PARK.startswith("journal-written-back:"):
                # The kernel wrote the index back before the result files (fsync off):
                # the order a power cut punished in the field.
                experiment_dir = record.result_path.parents[3]
                journal = os.open(experiment_dir / "checkpoint.journal", os.O_RDONLY)
                os.fsync(journal)
                os.close(journal)
            _park(PARK)

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    global ending
    ending = True

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    if PARK == "after-last-compaction":
        _park(PARK)

_start_journal = store_module.CheckpointStore._start_journal

def _parked_start_journal(self, generation):
    # Called by a compaction right after the new snapshot is written, before the journal
    # is emptied: the cut the issue found (a 'running' replayed over 'completed').
    if ending and PARK == "mid-last-compaction":
        _park(PARK)
    _start_journal(self, generation)

store_module.CheckpointStore._start_journal = _parked_start_journal
"""


def _skip_reason() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (FUSE mounts)"
    if not Path("/dev/fuse").exists():
        return "needs /dev/fuse"
    if not BUILD_SCRIPT.is_file():
        return f"needs the LazyFS build script at {BUILD_SCRIPT}"
    return None


@dataclass
class LazyFS:
    """A LazyFS mount: ``mnt`` is where programs write, ``root`` holds what reached 'disk'."""

    binary: Path
    base: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def mnt(self) -> Path:
        return self.base / "mnt"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def fifo(self) -> Path:
        return self.base / "faults.fifo"

    def mount(self) -> None:
        config = self.base / "lazyfs.toml"
        config.write_text(
            f'[faults]\nfifo_path="{self.fifo}"\n[cache]\napply_eviction=false\n'
            '[cache.simple]\ncustom_size="256mb"\nblocks_per_page=1\n'
            f'[filesystem]\nlog_all_operations=false\nlogfile="{self.base / "lazyfs.log"}"\n'
        )
        self.process = subprocess.Popen(
            [
                str(self.binary),
                str(self.mnt),
                "--config-path",
                str(config),
                "-o",
                "allow_other",
                "-o",
                "modules=subdir",
                "-o",
                f"subdir={self.root}",
                "-f",
            ],
            stdout=open(self.base / "lazyfs.out", "ab"),  # noqa: SIM115 - for the process's life
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not os.path.ismount(self.mnt):
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = (self.base / "lazyfs.out").read_text(errors="replace")[-400:]
                raise RuntimeError(f"LazyFS did not mount: {output}")
            time.sleep(0.05)

    def unmount(self) -> None:
        subprocess.run(["fusermount3", "-u", str(self.mnt)], check=False, capture_output=True)
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def cut_power(self) -> None:
        """Every byte not flushed is gone: drop LazyFS's cache, then unmount and mount."""
        with open(self.fifo, "w") as fifo:
            fifo.write("lazyfs::clear-cache\n")
        time.sleep(0.3)  # the fault thread clears the cache, then says so in its log
        self.unmount()
        self.mount()


@pytest.fixture(scope="module")
def lazyfs() -> Iterator[LazyFS]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    built = subprocess.run(
        ["bash", str(BUILD_SCRIPT), str(LAZYFS_BUILD_DIR)], capture_output=True, text=True
    )
    if built.returncode != 0:
        pytest.skip(f"LazyFS could not be built: {built.stderr[-500:]}")
    # LazyFS's own argument parser takes a path holding "-o" or "-c" (pytest's
    # /tmp/pytest-of-root/...) for options of its own: its files live in a plain dir.
    base = Path(tempfile.mkdtemp(prefix="expresume_lazyfs_", dir="/tmp"))
    (base / "mnt").mkdir()
    (base / "root").mkdir()
    os.mkfifo(base / "faults.fifo")
    fs = LazyFS(Path(built.stdout.strip().splitlines()[-1]), base)
    try:
        fs.mount()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield fs
    fs.unmount()
    shutil.rmtree(base, ignore_errors=True)


def _project(tmp_path: Path, fsync: bool) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    experiment = {
        "experiment_id": "power",
        "tiers": TIERS,
        "subtests": SUBTESTS,
        "runs_per_subtest": RUNS,
    }
    (project / "experiment.json").write_text(json.dumps(experiment))
    (project / "pytest.ini").write_text(
        f"[pytest]\nexpresume_config = experiment.json\nexpresume_fsync = {str(fsync).lower()}\n"
    )
    (project / "test_agent.py").write_text(AGENT)
    (project / "conftest.py").write_text(PARKING)
    return project


def _session(project: Path, results: Path, log: Path, park: str = "") -> subprocess.Popen[bytes]:
    env = {**os.environ, "POWERLOSS_LOG": str(log), "POWERLOSS_PARK": park}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "pytest", *PYTEST_ARGS, "-q"),
            *("-p", "no:randomly", "-p", "no:sugar", f"--results-root={results}"),
        ],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _lines(log: Path, kind: str) -> list[str]:
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.startswith(kind)]


def _wait(log: Path, proc: subprocess.Popen[bytes], until: str, count: int = 1) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(_lines(log, until)) >= count:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


@dataclass
class Cut:
    """One cut's outcome, for the figures the test prints."""

    #: Runs whose recording finished (the run_recorded hook ran) before the cut.
    recorded_before: int
    #: Of those, the runs that ran again after it: lost to the cut, and paid twice.
    ran_again: list[str]


def _one_cut(lazyfs: LazyFS, tmp_path: Path, fsync: bool, rng: random.Random, aim: str) -> Cut:
    project = _project(tmp_path, fsync)
    results = lazyfs.mnt / tmp_path.name
    log = tmp_path / "powerloss.log"
    proc = _session(project, results, log, park=aim)
    if aim:
        _wait(log, proc, "parked")
    else:
        # A random moment: during start-up, or once some runs are recorded.
        target = rng.choice([0, 0, *range(1, len(ALL_RUNS))])
        if target == 0:
            time.sleep(rng.uniform(0.0, 1.5))
        else:
            _wait(log, proc, "recorded", target)
            time.sleep(rng.uniform(0.0, 0.05))
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    recorded = set(_lines(log, "recorded"))
    started_before = len(_lines(log, "start"))
    lazyfs.cut_power()

    resumed = _session(project, results, log)
    assert resumed.wait(timeout=300) == 0, "the experiment did not resume to the end"
    ran_again = _lines(log, "start")[started_before:]
    dirs = [d for d in find_experiment_dirs(results, "power") if (d / "checkpoint.json").exists()]
    experiment_dir = dirs[-1]
    with CheckpointStore(experiment_dir, fsync=False) as store:
        checkpoint = store.load()
    assert checkpoint.status == "completed"
    listed = {f"{k.tier}/{k.subtest}/{k.run}" for k in checkpoint.completed_runs}
    assert listed == ALL_RUNS
    for key in checkpoint.completed_runs:
        path = experiment_dir / key.tier / key.subtest / f"run_{key.run:02d}" / "run_result.json"
        saved = json.loads(path.read_bytes())  # whole: valid JSON, with the plugin's fields
        assert saved["expresume"]["status"] == checkpoint.completed_runs[key]
    return Cut(len(recorded), ran_again=sorted(recorded & set(ran_again)))


AIMS = [
    "after-record:5",
    "after-record:23",
    "journal-written-back:17",
    "mid-last-compaction",
    "after-last-compaction",
]


@pytest.mark.parametrize("fsync", [True, False], ids=["fsync-on", "fsync-off"])
def test_power_cuts_lose_no_recorded_run_and_always_resume(
    lazyfs: LazyFS, tmp_path_factory: pytest.TempPathFactory, fsync: bool
) -> None:
    rng = random.Random(2026 + fsync)
    rounds = [*AIMS, *[""] * 17]  # 22 cuts: 5 aimed, 17 at random moments
    cuts: list[Cut] = []
    for aim in rounds:
        tmp_path = tmp_path_factory.mktemp("cut")
        cuts.append(_one_cut(lazyfs, tmp_path, fsync, rng, aim))
    recorded = sum(c.recorded_before for c in cuts)
    lost = [run for c in cuts for run in c.ran_again]
    print(
        f"\n{'fsync on' if fsync else 'fsync off'}: {len(cuts)} power cuts, "
        f"{recorded} runs recorded before a cut, {len(lost)} of them run again after it"
    )
    if fsync:
        # SPEC: with fsync on no run whose recording finished is lost or paid twice.
        assert lost == [], lost
