"""Benchmarks of pytest-expresume against plain pytest, side by side in one invocation.

    python bench/run.py            # grids of 1,000, 10,000 and 100,000 runs
    python bench/run.py --quick    # 1,000 and 10,000 runs, fewer repetitions (< 2 minutes)

Every figure is a ratio against a baseline measured in the same invocation, interleaved
(baseline, ours, baseline, ours, ...), as medians over the repetitions. The table is
printed and written to bench/RESULTS.md (or --output).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson

from pytest_expresume import Checkpoint, CheckpointStore, RunKey

HERE = Path(__file__).parent
RUNS_PER_SUBTEST = 10
TIERS = 10

BARE_LOOP = """
import os, sys, orjson
n = 0
for dirpath, dirs, files in os.walk(sys.argv[1]):
    if "run_result.json" in files:
        with open(os.path.join(dirpath, "run_result.json"), "rb") as f:
            orjson.loads(f.read())
        n += 1
print(n)
"""


@dataclass(frozen=True)
class Timing:
    """Wall time of one process and its peak resident memory."""

    seconds: float
    peak_rss_mb: float


def run_process(args: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> Timing:
    """Run a command to its end; wall time and the child's peak RSS (from wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env()
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {stderr[-2000:]}")
    return Timing(seconds, usage.ru_maxrss / 1024)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def pytest_args(*args: str) -> list[str]:
    """The same pytest command line for ours and the baseline (plugins as installed)."""
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]


def ours_args(results: Path, *, fsync: bool | None = None) -> list[str]:
    """The experiment session of a project, its results under ``results``."""
    args = ["test_ours.py", "--experiment", "experiment.json", "--results-root", str(results)]
    if fsync is not None:
        args += ["-o", f"expresume_fsync={'true' if fsync else 'false'}"]
    return pytest_args(*args)


def make_project(root: Path, runs: int) -> Path:
    """A project with one experiment test and one plain parametrize over the same ids."""
    subtests = runs // (TIERS * RUNS_PER_SUBTEST)
    project = root / f"grid-{runs}"
    project.mkdir(parents=True)
    tiers = [f"T{t}" for t in range(TIERS)]
    names = [f"{s:03d}" for s in range(subtests)]
    (project / "experiment.json").write_bytes(
        orjson.dumps(
            {
                "experiment_id": "bench",
                "tiers": tiers,
                "subtests": names,
                "runs_per_subtest": RUNS_PER_SUBTEST,
            }
        )
    )
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_ours.py").write_text("def test_agent(experiment_run):\n    pass\n")
    ids = [f"{t}-{s}-run_{r:02d}" for t in tiers for s in names for r in range(1, 11)]
    (project / "ids.json").write_bytes(orjson.dumps(ids))
    (project / "test_plain.py").write_text(
        "import json, pytest\n"
        "IDS = json.load(open(__file__.replace('test_plain.py', 'ids.json')))\n"
        "@pytest.mark.parametrize('run', IDS, ids=IDS)\n"
        "def test_agent(run):\n    pass\n"
    )
    return project


def remove(path: Path) -> None:
    """Delete a results tree and let the filesystem settle before the next measurement."""
    shutil.rmtree(path)
    os.sync()


def median_of(samples: list[float]) -> float:
    return statistics.median(samples)


class Bench:
    """Collects the rows of the results table."""

    def __init__(self, reps: int, workdir: Path) -> None:
        self.reps = reps
        self.workdir = workdir
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.notes: list[str] = []
        self._results_n = 0
        self.floor_per_run: dict[int, float] = {}
        self.startup = 0.0

    def fresh_results(self, project: Path) -> Path:
        self._results_n += 1
        path = project / f"results-{self._results_n}"
        return path

    def row(self, figure: str, ours: str, baseline: str, ratio: str, goal: str) -> None:
        self.rows.append((figure, ours, baseline, ratio, goal))
        print(f"  {figure}: ours {ours}, baseline {baseline} -> {ratio} (goal {goal})", flush=True)

    def interleave(self, *commands: Callable[[], Timing]) -> list[list[Timing]]:
        samples: list[list[Timing]] = [[] for _ in commands]
        for _ in range(self.reps):
            for i, command in enumerate(commands):
                samples[i].append(command())
        return samples


def recording(bench: Bench, project: Path, runs: int, *, fsync_on: bool) -> float:
    """Full sessions: plain parametrize vs the plugin (fsync off, and on when asked)."""

    def plain() -> Timing:
        return run_process(pytest_args("test_plain.py"), project)

    def ours(fsync: bool) -> Callable[[], Timing]:
        def session() -> Timing:
            results = bench.fresh_results(project)
            timing = run_process(ours_args(results, fsync=fsync), project)
            remove(results)
            return timing

        return session

    def floor(fsync: bool) -> Callable[[], Timing]:
        def loop() -> Timing:
            results = bench.fresh_results(project)
            script = [sys.executable, str(HERE / "fs_floor.py"), str(results), str(runs)]
            timing = run_process([*script, "--fsync"] if fsync else script, project)
            remove(results)
            return timing

        return loop

    commands = [plain, ours(False), floor(False)]
    if fsync_on:
        commands += [ours(True), floor(True)]
    samples = bench.interleave(*commands)
    base = median_of([t.seconds for t in samples[0]])
    off = median_of([t.seconds for t in samples[1]])
    fs = median_of([t.seconds for t in samples[2]])
    bench.row(
        f"recording, {runs:,} runs, fsync off: session time",
        f"{off:.2f} s",
        f"{base:.2f} s",
        f"{off / base:.2f}x",
        "<= 1.3x",
    )
    bench.row(
        f"... the same, less the filesystem floor (a bare loop making {runs:,} run dirs "
        f"and result files: {fs:.2f} s)",
        f"{off - fs:.2f} s",
        f"{base:.2f} s",
        f"{(off - fs) / base:.2f}x",
        "-",
    )
    if fsync_on:
        on = median_of([t.seconds for t in samples[3]])
        fs_on = median_of([t.seconds for t in samples[4]])
        extra_ms = (on - base) / runs * 1000
        bench.row(
            f"recording, {runs:,} runs, fsync on: extra per run",
            f"{on:.2f} s",
            f"{base:.2f} s",
            f"+{extra_ms:.2f} ms/run",
            "<= 1 ms/run",
        )
        bench.row(
            f"... the same, less the filesystem floor with the same flushes ({fs_on:.2f} s)",
            f"{on - fs_on:.2f} s",
            f"{base:.2f} s",
            f"+{(on - fs_on - base) / runs * 1000:.2f} ms/run",
            "-",
        )
        # What recording adds to each run, against what any durable recording must do
        # (mkdir and its entry flushed, the result file written whole and flushed with its
        # directory), measured alike.
        bench.row(
            f"recording, {runs:,} runs, fsync on: cost per run above plain pytest, "
            "vs the durable floor per run",
            f"{(on - base) / runs * 1000:.2f} ms",
            f"{fs_on / runs * 1000:.2f} ms",
            f"{(on - base) / fs_on:.2f}x",
            "<= 1.5x",
        )
    bench.floor_per_run[runs] = fs / runs
    return off


def startup(bench: Bench, project: Path) -> float:
    """pytest's fixed cost here: start, find no test, exit."""
    empty = project / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    (empty / "pytest.ini").write_text("[pytest]\n")
    # Exit 5: no tests, as intended.
    samples = bench.interleave(lambda: run_process(pytest_args("--co"), empty, ok=(5,)))
    return median_of([t.seconds for t in samples[0]])


def finished_experiment(project: Path) -> Path:
    """Run the grid once with fsync off; the results root of a finished experiment."""
    results = project / "finished"
    run_process(ours_args(results, fsync=False), project)
    return results


def resume_and_memory(bench: Bench, project: Path, runs: int, results: Path) -> None:
    """Resuming a finished grid vs --collect-only of the same items, and vs pytest itself
    deselecting every item (``-k`` matching none); peak RSS of the first two."""

    def collect_only() -> Timing:
        return run_process(pytest_args("--collect-only", "test_plain.py"), project)

    def deselect_all() -> Timing:
        # Exit 5: every item deselected, no test ran (as intended).
        return run_process(pytest_args("-k", "no_such_run", "test_plain.py"), project, ok=(5,))

    def resume() -> Timing:
        return run_process(ours_args(results), project)

    base, deselecting, ours = bench.interleave(collect_only, deselect_all, resume)
    b, o = median_of([t.seconds for t in base]), median_of([t.seconds for t in ours])
    d = median_of([t.seconds for t in deselecting])
    bench.row(
        f"resume of a finished grid, {runs:,} runs",
        f"{o:.2f} s",
        f"{b:.2f} s",
        f"{o / b:.2f}x",
        "<= 1.3x",
    )
    bench.row(
        "... the same, vs pytest deselecting all its items itself (`-k` matching none)",
        f"{o:.2f} s",
        f"{d:.2f} s",
        f"{o / d:.2f}x",
        "-",
    )
    bm = median_of([t.peak_rss_mb for t in base])
    om = median_of([t.peak_rss_mb for t in ours])
    bench.row(
        f"peak RSS resuming {runs:,} runs",
        f"{om:.0f} MB",
        f"{bm:.0f} MB",
        f"{om / bm:.2f}x",
        "<= 1.3x",
    )


def rebuild_command(experiment_dir: Path, project: Path) -> Timing:
    """One ``pytest --rebuild-checkpoint``; the backups it makes are removed after it."""
    timing = run_process(
        pytest_args("--rebuild-checkpoint", "--experiment-dir", str(experiment_dir)), project
    )
    for backup in experiment_dir.glob("checkpoint.json.bak-*"):
        backup.unlink()
    return timing


def rebuild(bench: Bench, project: Path, runs: int, results: Path) -> None:
    """--rebuild-checkpoint vs a bare loop that walks the dir and parses each file."""
    experiment_dir = next(p for p in results.iterdir() if p.is_dir())
    script = project / "bare_loop.py"
    script.write_text(BARE_LOOP)

    def bare() -> Timing:
        return run_process([sys.executable, str(script), str(experiment_dir)], project)

    def ours() -> Timing:
        return rebuild_command(experiment_dir, project)

    base, mine = bench.interleave(bare, ours)
    b, o = median_of([t.seconds for t in base]), median_of([t.seconds for t in mine])
    bench.row(
        f"rebuild from {runs:,} result files (`pytest --rebuild-checkpoint`)",
        f"{o:.2f} s",
        f"{b:.2f} s",
        f"{o / b:.2f}x",
        "<= 1.5x",
    )
    bench.row(
        f"... the same, less pytest's start-up ({bench.startup:.2f} s)",
        f"{o - bench.startup:.2f} s",
        f"{b:.2f} s",
        f"{(o - bench.startup) / b:.2f}x",
        "-",
    )


def dead_session_check(bench: Bench, project: Path, runs: int, results: Path) -> None:
    """The start after a session died reads the result files of the runs it recorded: its
    cost above a clean resume, against a rebuild from the same files."""
    experiment_dir = next(p for p in results.iterdir() if p.is_dir())

    def as_a_dead_session_leaves_it() -> None:
        # Every run recorded, none flushed, by a session that never ended: the worst case
        # (with fsync on each record says its file was flushed, and none is listed).
        with CheckpointStore(experiment_dir, fsync=False) as store, store.locked():
            checkpoint = store.load_locked()
            checkpoint.status = "running"
            checkpoint.recorded_since_clean_end = set(checkpoint.completed_runs)
            store.replace_locked(checkpoint)

    def clean() -> Timing:
        return run_process(ours_args(results), project)

    def after_death() -> Timing:
        as_a_dead_session_leaves_it()
        return run_process(ours_args(results), project)

    def rebuild_from_files() -> Timing:
        return rebuild_command(experiment_dir, project)

    clean_s, dead_s, rebuild_s = (
        median_of([t.seconds for t in samples])
        for samples in bench.interleave(clean, after_death, rebuild_from_files)
    )
    extra = dead_s - clean_s
    bench.row(
        f"start after a session died with fsync off: reading the result files of the "
        f"{runs:,} runs it recorded (above a clean resume), vs `pytest --rebuild-checkpoint`",
        f"{extra:.2f} s",
        f"{rebuild_s:.2f} s",
        f"{extra / rebuild_s:.2f}x",
        "<= 1.0x",
    )


CHECK_VS_SCAN = """
import sys, time
from pathlib import Path
from pytest_expresume import CheckpointStore
from pytest_expresume.scanner import scan_result_files, unwhole_results
experiment_dir = Path(sys.argv[1])
keys = list(CheckpointStore(experiment_dir).load().completed_runs)
if sys.argv[2] == "check":
    start = time.perf_counter()
    assert not unwhole_results(experiment_dir, keys)
else:
    start = time.perf_counter()
    assert len(scan_result_files(experiment_dir).found) == len(keys)
print(time.perf_counter() - start)
"""


def check_vs_scan(bench: Bench, project: Path, runs: int, results: Path) -> None:
    """The same two costs without a session around them (its noise is larger than the
    check): the check reading back every run's file, vs the rebuild's scan of the dir."""
    experiment_dir = next(p for p in results.iterdir() if p.is_dir())
    script = project / "check_vs_scan.py"
    script.write_text(CHECK_VS_SCAN)

    def timed(what: str) -> Callable[[], float]:
        def run() -> float:
            out = subprocess.run(
                [sys.executable, str(script), str(experiment_dir), what],
                cwd=project,
                check=True,
                capture_output=True,
                text=True,
                env=_env(),
            )
            return float(out.stdout.strip().splitlines()[-1])

        return run

    check_samples: list[float] = []
    scan_samples: list[float] = []
    for _ in range(bench.reps):
        check_samples.append(timed("check")())
        scan_samples.append(timed("scan")())
    check_s, scan_s = median_of(check_samples), median_of(scan_samples)
    bench.row(
        f"... the check alone in one process (`unwhole_results` over {runs:,} runs), vs the "
        "rebuild's scan of the same files (`scan_result_files`)",
        f"{check_s:.2f} s",
        f"{scan_s:.2f} s",
        f"{check_s / scan_s:.2f}x",
        "<= 1.0x",
    )


def results_commands(bench: Bench, project: Path, runs: int, results: Path) -> None:
    """The commands that read every result file (status figures, export, report): time and
    peak RSS, against ``--rebuild-checkpoint`` over the same files and pytest's start-up
    (what streaming must keep flat: no dict per run held)."""
    experiment_dir = next(p for p in results.iterdir() if p.is_dir())
    out = Path(tempfile.mkdtemp(dir=bench.workdir))

    def command(*args: str) -> Callable[[], Timing]:
        return lambda: run_process(
            pytest_args(f"--experiment-dir={experiment_dir}", *args), project
        )

    commands = {
        "--experiment-status": command("--experiment-status"),
        "--experiment-export=runs.csv": command(f"--experiment-export={out / 'runs.csv'}"),
        "--experiment-export=runs.jsonl": command(f"--experiment-export={out / 'runs.jsonl'}"),
        "--experiment-report=report.html": command(f"--experiment-report={out / 'r.html'}"),
    }
    samples = bench.interleave(lambda: rebuild_command(experiment_dir, project), *commands.values())
    rebuild_s = median_of([t.seconds for t in samples[0]])
    rebuild_mb = max(t.peak_rss_mb for t in samples[0])
    for name, timings in zip(commands, samples[1:], strict=True):
        seconds = median_of([t.seconds for t in timings])
        peak = max(t.peak_rss_mb for t in timings)
        bench.row(
            f"`{name}` over {runs:,} result files, vs `--rebuild-checkpoint` (peak RSS "
            f"{peak:.0f} MB vs {rebuild_mb:.0f} MB)",
            f"{seconds:.2f} s",
            f"{rebuild_s:.2f} s",
            f"{seconds / rebuild_s:.2f}x",
            "-",
        )
    shutil.rmtree(out)


def load(bench: Bench, runs: int, journal_records: int) -> None:
    """Loading a checkpoint of ``runs`` runs with a journal of ``journal_records`` records."""
    directory = Path(tempfile.mkdtemp(dir=bench.workdir))
    keys = [
        RunKey(f"T{t}", f"{s:03d}", r)
        for t in range(TIERS)
        for s in range(runs // (TIERS * 10))
        for r in range(1, 11)
    ]
    base = keys[: runs - journal_records]
    with CheckpointStore(directory, fsync=False) as store:
        store.create(Checkpoint("bench", str(directory), "sha256:x", dict.fromkeys(base, "passed")))
        for key in keys[len(base) :]:
            store.record(key, "failed")
    times = []
    for _ in range(max(bench.reps, 5)):
        start = time.perf_counter()
        with CheckpointStore(directory) as store:
            loaded = store.load()
        times.append(time.perf_counter() - start)
    assert len(loaded.completed_runs) == runs
    t = median_of(times)
    bench.row(
        f"load a {runs:,}-run checkpoint with a {journal_records:,}-record journal",
        f"{t:.3f} s",
        "-",
        "-",
        "<= 0.5 s",
    )
    shutil.rmtree(directory)


def flatness(bench: Bench, per_run: dict[int, float]) -> None:
    small, large = min(per_run), max(per_run)
    ratio = per_run[large] / per_run[small]
    bench.row(
        f"flatness: cost per run at {large:,} vs {small:,} (start-up excluded)",
        f"{per_run[large] * 1e6:.0f} us",
        f"{per_run[small] * 1e6:.0f} us",
        f"{ratio:.2f}x",
        "<= 1.15x",
    )
    floor = bench.floor_per_run
    bench.row(
        f"... the filesystem floor alone, per run at {large:,} vs {small:,}",
        f"{floor[large] * 1e6:.0f} us",
        f"{floor[small] * 1e6:.0f} us",
        f"{floor[large] / floor[small]:.2f}x",
        "-",
    )
    rest = {n: per_run[n] - floor[n] for n in per_run}
    bench.row(
        f"... ours less the floor, per run at {large:,} vs {small:,}",
        f"{rest[large] * 1e6:.0f} us",
        f"{rest[small] * 1e6:.0f} us",
        f"{rest[large] / rest[small]:.2f}x",
        "-",
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}"
    )


def write_results(bench: Bench, output: Path, mode: str, seconds: float) -> None:
    import pytest

    lines = [
        "# Benchmark results",
        "",
        f"`python bench/run.py{' --quick' if mode == 'quick' else ''}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}; pytest "
        f"{pytest.__version__}; {bench.reps} interleaved repetitions, medians; "
        f"took {seconds / 60:.1f} minutes.",
        "",
        "| figure | ours | baseline | ratio | goal |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {' | '.join(row)} |" for row in bench.rows),
        "",
        *bench.notes,
        "",
        "How to read the rows marked `...`: a run that is recorded must leave a run dir and",
        "a result file written whole (temp file, rename) and an index line. The *filesystem",
        "floor* is a bare Python loop doing exactly that work for the same number of runs,",
        "measured in the same invocation; 'ours less the floor' is what pytest and the",
        "plugin's own code cost. Where the floor alone exceeds the goal's budget, the goal",
        "cannot be met on this disk by any recording plugin that writes a file per run.",
    ]
    output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k runs, 2 repetitions")
    parser.add_argument("--reps", type=int, help="repetitions per figure")
    parser.add_argument("--output", type=Path, help="where to write the table")
    parser.add_argument("--workdir", type=Path, help="where to build the grids (a temp dir)")
    args = parser.parse_args()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    reps = args.reps or (2 if args.quick else 3)
    output = args.output or (HERE / ("RESULTS-quick.md" if args.quick else "RESULTS.md"))
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="expresume-bench-", dir=args.workdir))
    bench = Bench(reps, workdir)
    try:
        per_run: dict[int, float] = {}
        fixed = startup(bench, workdir / "startup-project")
        bench.startup = fixed
        bench.notes.append(
            f"pytest's own start-up here (no tests): {fixed:.2f} s, subtracted for flatness."
        )
        largest = max(sizes)
        for runs in sizes:
            print(f"grid of {runs:,} runs", flush=True)
            project = make_project(workdir, runs)
            # fsync on costs a flush to disk per write: measured up to 10,000 runs, per run.
            off = recording(bench, project, runs, fsync_on=runs <= 10_000)
            per_run[runs] = (off - fixed) / runs
            if runs == largest:
                results = finished_experiment(project)
                resume_and_memory(bench, project, runs, results)
                rebuild(bench, project, runs, results)
                dead_session_check(bench, project, runs, results)
                check_vs_scan(bench, project, runs, results)
                results_commands(bench, project, runs, results)
            shutil.rmtree(project)
        flatness(bench, per_run)
        load(bench, largest, largest // 10)
        if largest == 100_000:
            bench.notes.append(
                "fsync on is measured at 1,000 and 10,000 runs: its cost is per run "
                "(three flushes: the run dir's entry, the result file and its directory; "
                "the journal is flushed when compacted)."
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    write_results(bench, output, "quick" if args.quick else "full", time.perf_counter() - started)


if __name__ == "__main__":
    main()
