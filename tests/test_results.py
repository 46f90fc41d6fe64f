"""Results as data: load_results, results_frame, --experiment-export, the status figures
and --experiment-report, over a grid of passed, failed, error and skipped runs with
earlier attempts (which are not current)."""

from __future__ import annotations

import csv
import json
import math
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from expresume_testing import only_experiment_dir, snapshot_tree, statuses, write_experiment
from hypothesis import given
from hypothesis import strategies as st

from pytest_expresume import RunResult, load_results, results_frame
from pytest_expresume.results import wilson_interval

RESULT_TEST = """
import os, pytest

def test_agent(experiment_run):
    run = experiment_run
    rid = f"{run.tier}-{run.subtest}-{run.run}"
    with open("executions.log", "a") as log:
        log.write(rid + "\\n")
    run.result["cost_usd"] = 0.25 * run.run
    run.result["judge"] = {"model": "opus", "score": run.run / 10}
    behaviour = run.config["behaviour"].get(rid)
    if behaviour == "fail":
        assert False, "judges said no"
    if behaviour == "error":
        raise RuntimeError("provider <down> & out")
    if behaviour == "skip":
        pytest.skip("not today")
"""

BEHAVIOUR = {"T0-00-2": "fail", "T0-01-1": "error", "T0-01-2": "skip", "T1-00-1": "fail"}


@pytest.fixture
def experiment_dir(pytester: pytest.Pytester) -> Path:
    """A finished grid of 8 runs (4 passed, 2 failed, 1 error, 1 skipped); the error run
    ran twice, so its first attempt is in .attempts/."""
    write_experiment(pytester, behaviour=BEHAVIOUR)
    pytester.makepyfile(test_agent=RESULT_TEST)
    pytester.runpytest().assert_outcomes(passed=4, failed=3, skipped=1)
    pytester.runpytest().assert_outcomes(failed=1, deselected=7)  # the error runs again
    directory = only_experiment_dir(pytester)
    assert (directory / "T0" / "01" / ".attempts" / "run_01-1" / "run_result.json").is_file()
    return directory


def test_load_results_gives_one_typed_record_per_current_run(experiment_dir: Path) -> None:
    records = load_results(experiment_dir)
    assert all(isinstance(record, RunResult) for record in records)
    assert [f"{r.tier}/{r.subtest}/{r.run}" for r in records] == sorted(statuses(experiment_dir))
    assert {f"{r.tier}/{r.subtest}/{r.run}": r.status for r in records} == statuses(experiment_dir)
    error = next(r for r in records if r.status == "error")
    assert error.message is not None
    assert "provider <down> & out" in error.message
    assert error.path == experiment_dir / "T0" / "01" / "run_01" / "run_result.json"
    passed = records[0]
    assert passed.result == {"cost_usd": 0.25, "judge": {"model": "opus", "score": 0.1}}
    assert "expresume" not in passed.result
    assert passed.duration_seconds is not None
    assert passed.finished_at is not None


def test_results_frame_flattens_user_fields_with_dots(experiment_dir: Path) -> None:
    pytest.importorskip("pandas")
    frame = results_frame(experiment_dir)
    assert len(frame) == 8
    assert {"tier", "status", "cost_usd", "judge.model", "judge.score"} <= set(frame.columns)
    assert frame["cost_usd"].sum() == pytest.approx(0.25 * (1 + 2) * 4)
    assert sorted(frame["status"].unique()) == ["error", "failed", "passed", "skipped"]


def test_results_frame_without_pandas_says_how_to_get_it(
    experiment_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'pytest-expresume\[pandas\]'"):
        results_frame(experiment_dir)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_export_writes_every_current_run_and_runs_nothing(
    pytester: pytest.Pytester, experiment_dir: Path, suffix: str
) -> None:
    before = snapshot_tree(experiment_dir)
    runs_before = (pytester.path / "executions.log").read_text()
    result = pytester.runpytest(f"--experiment-export=out{suffix}")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"expresume: wrote 8 runs of * to *out{suffix}"])
    assert (pytester.path / "executions.log").read_text() == runs_before  # no test ran
    assert snapshot_tree(experiment_dir) == before  # read only
    text = (pytester.path / f"out{suffix}").read_text()
    if suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        assert rows[0]["judge.model"] == "opus"
        by_run = {f"{r['tier']}/{r['subtest']}/{r['run']}": r for r in rows}
    else:
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines[0]["result"]["judge"] == {"model": "opus", "score": 0.1}
        by_run = {f"{r['tier']}/{r['subtest']}/{r['run']}": r for r in lines}
    assert {key: row["status"] for key, row in by_run.items()} == statuses(experiment_dir)


def test_export_with_another_suffix_is_a_usage_error_and_writes_nothing(
    pytester: pytest.Pytester, experiment_dir: Path
) -> None:
    result = pytester.runpytest("--experiment-export=out.xlsx")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--experiment-export out.xlsx: the file name must end in*"])
    assert not (pytester.path / "out.xlsx").exists()


def test_export_needs_only_the_experiment_dir(
    pytester: pytest.Pytester, experiment_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--experiment-dir={experiment_dir}",
            "--experiment-export=runs.jsonl",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len((elsewhere / "runs.jsonl").read_text().splitlines()) == 8


def test_status_shows_duration_cost_interval_and_eta(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, behaviour=BEHAVIOUR)
    pytester.makepyfile(test_agent=RESULT_TEST)
    pytester.runpytest("-k", "T0").assert_outcomes(passed=1, failed=2, skipped=1, deselected=4)
    experiment_dir = only_experiment_dir(pytester)
    status = pytester.runpytest("--experiment-status")
    assert status.ret == 0, status.stdout.str()
    records = load_results(experiment_dir)
    cost = sum(r.result["cost_usd"] for r in records)
    duration = sum(r.duration_seconds or 0 for r in records)
    low, high = wilson_interval(1, 2)  # T0: 1 passed, 1 failed (error and skip are no verdict)
    status.stdout.fnmatch_lines(
        [
            "tier *duration*cost*pass rate (95% CI)*eta (pending)",
            f"T0 *s * {cost:.2f} * 50.0% [[]{low:.1%}, {high:.1%}[]] * done",
            # T1 has no result yet: its 4 runs at the mean duration so far.
            f"T1 * 0.0s * - * - * {4 * duration / 4:.1f}s (4)",
            f"total * {cost:.2f} * (4)",
        ]
    )


def test_flattening_never_drops_a_value_whose_dotted_name_collides() -> None:
    from pytest_expresume.results import flatten

    assert flatten({"judge.score": 1, "judge": {"score": 2, "model": "opus"}}) == {
        "judge.score": 1,
        "judge.score (2)": 2,
        "judge.model": "opus",
    }


def test_a_user_field_named_like_a_fixed_one_is_kept_beside_it(tmp_path: Path) -> None:
    from pytest_expresume.results import record_row

    record = RunResult("T0", "00", 1, "passed", None, 1.5, None, tmp_path, {"status": "ok"})
    row = record_row(record)
    assert row["status"] == "passed"
    assert row["status (2)"] == "ok"


def test_wilson_interval_matches_known_values() -> None:
    # 8 of 10: the textbook 95% Wilson interval is [0.4902, 0.9433].
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert round(high, 4) == 0.2775


@given(st.integers(min_value=1, max_value=10_000), st.data())
def test_wilson_interval_holds_the_rate_inside_zero_one(total: int, data: st.DataObject) -> None:
    passed = data.draw(st.integers(min_value=0, max_value=total))
    low, high = wilson_interval(passed, total)
    assert 0.0 <= low <= passed / total <= high <= 1.0
    assert not math.isnan(low)
    assert not math.isnan(high)


def test_report_is_one_self_contained_page(pytester: pytest.Pytester, experiment_dir: Path) -> None:
    before = snapshot_tree(experiment_dir)
    result = pytester.runpytest("--experiment-report=report.html")
    assert result.ret == 0, result.stdout.str()
    assert snapshot_tree(experiment_dir) == before
    page = (pytester.path / "report.html").read_text()
    assert "<svg" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert "<script" not in page
    assert "provider &lt;down&gt; &amp; out" in page  # the error, escaped
    assert "T0-01-run_01" in page
    bad = pytester.runpytest("--experiment-report=report.pdf")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG (enough to tell blank)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, width, height = 8, b"", 0, 0
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        body = png[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    return width, height, zlib.decompress(idat)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt install chromium)")
def test_report_renders_in_headless_chromium(
    pytester: pytest.Pytester, experiment_dir: Path, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    pytester.runpytest("--experiment-report=report.html")
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1100,900",
            f"--screenshot={shot}",
            (pytester.path / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    width, height, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (1100, 900)
    # A blank page is one colour: its scanlines hold a handful of byte values. The heat
    # map's hues, the text and the tables give many.
    assert len(set(pixels)) > 64
