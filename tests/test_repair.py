"""Repair and inspect as users run them: --rebuild-checkpoint, --experiment-status,
reconciliation on start, corrupt checkpoints, older layouts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from expresume_testing import (
    AGENT_TEST,
    checkpoint_json,
    executions,
    only_experiment_dir,
    statuses,
    tree_digest,
    write_experiment,
)

TIERS = ["T0", "T1", "T2", "T3", "T4"]
SUBTESTS = ["00", "01"]
RUNS = 59  # 5 x 2 x 59 = 590, the field case


def _field_case_dir(pytester: pytest.Pytester) -> Path:
    """An experiment dir as the field incident left it: 590 result files of an older
    tool (judge_passed, no expresume fields), a version "2.0" checkpoint that says
    completed_runs: {}, and a saved config that names its tiers tiers_to_run."""
    experiment_dir = pytester.path / "results" / "2026-01-20T06-50-26-test-001"
    for tier in TIERS:
        for subtest in SUBTESTS:
            for run in range(1, RUNS + 1):
                run_dir = experiment_dir / tier / subtest / f"run_{run:02d}"
                (run_dir / "workspace").mkdir(parents=True)
                result = {"judge_passed": (run + int(tier[1])) % 4 != 0, "cost_usd": 0.12}
                (run_dir / "run_result.json").write_text(json.dumps(result))
                # A workspace may hold anything, even another run_result.json.
                (run_dir / "workspace" / "run_result.json").write_text("{not ours")
    (experiment_dir / "config").mkdir()
    (experiment_dir / "config" / "experiment.json").write_text(
        json.dumps(
            {
                "experiment_id": "test-001",
                "tiers_to_run": TIERS,
                "subtests": SUBTESTS,
                "runs_per_subtest": RUNS,
                "judge_models": ["opus", "sonnet", "haiku"],
                "thinking_mode": "none",
            }
        )
    )
    checkpoint = {
        "version": "2.0",
        "experiment_id": "test-001",
        "experiment_dir": str(experiment_dir),
        "config_hash": "abc123",
        "completed_runs": {},
        "status": "interrupted",
        "started_at": "2026-01-20T06:50:26+00:00",
        "last_updated_at": "2026-01-22T07:17:17+00:00",
        "rate_limit_source": None,
        "pause_count": 2,
        "pid": 4242,
    }
    (experiment_dir / "checkpoint.json").write_text(json.dumps(checkpoint, indent=2))
    return experiment_dir


def _failed_per_tier() -> dict[str, int]:
    return {
        tier: sum(
            1 for _ in SUBTESTS for run in range(1, RUNS + 1) if (run + int(tier[1])) % 4 == 0
        )
        for tier in TIERS
    }


def test_field_case_rebuild_gets_every_run_back_then_resume_has_nothing_to_run(
    pytester: pytest.Pytester,
) -> None:
    experiment_dir = _field_case_dir(pytester)
    original = (experiment_dir / "checkpoint.json").read_bytes()
    pytester.makepyfile(test_agent=AGENT_TEST)

    result = pytester.runpytest("--rebuild-checkpoint", "--experiment-dir", str(experiment_dir))
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            f"expresume: rebuilt the checkpoint of {experiment_dir}",
            "  backup: checkpoint.json.bak-*",
            "  original completed_runs: 0",
            "  rebuilt completed_runs:  590",
            "  difference:              +590",
            *(
                f"  {tier}: 118 runs ({failed} failed, {118 - failed} passed)"
                for tier, failed in _failed_per_tier().items()
            ),
        ]
    )
    assert "not used" not in result.stdout.str()  # workspace files are not result files
    assert executions(pytester) == []  # no test ran

    backups = list(experiment_dir.glob("checkpoint.json.bak-*"))
    assert len(backups) == 1
    assert backups[0].read_bytes() == original
    rebuilt = checkpoint_json(experiment_dir)
    rebuilt_bytes = (experiment_dir / "checkpoint.json").read_bytes()
    assert rebuilt["version"] == 1
    assert (rebuilt["pause_count"], rebuilt["pid"], rebuilt["rate_limit_source"]) == (2, 4242, None)
    assert rebuilt["started_at"] == "2026-01-20T06:50:26+00:00"
    assert rebuilt["status"] == "completed"
    assert len(statuses(experiment_dir)) == 590
    assert statuses(experiment_dir)["T0/00/4"] == "failed"

    again = pytester.runpytest("--rebuild-checkpoint", "--experiment-dir", str(experiment_dir))
    again.stdout.fnmatch_lines(["  original completed_runs: 590", "  difference:              +0"])
    assert (experiment_dir / "checkpoint.json").read_bytes() == rebuilt_bytes

    resumed = pytester.runpytest("--resume", "--experiment-dir", str(experiment_dir))
    assert resumed.ret == pytest.ExitCode.OK
    resumed.stdout.fnmatch_lines(["expresume: resuming test-001 at *: all 590 runs done, *"])
    assert executions(pytester) == []


def test_rebuild_twice_gives_the_same_checkpoint_bytes(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    pytester.runpytest("-k", "T0")
    experiment_dir = only_experiment_dir(pytester)
    pytester.runpytest("--rebuild-checkpoint")
    first = (experiment_dir / "checkpoint.json").read_bytes()
    pytester.runpytest("--rebuild-checkpoint")
    assert (experiment_dir / "checkpoint.json").read_bytes() == first
    assert len(list(experiment_dir.glob("checkpoint.json.bak-*"))) == 2


def test_rebuild_then_resume(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    pytester.runpytest("-k", "T0")
    experiment_dir = only_experiment_dir(pytester)
    data = checkpoint_json(experiment_dir)
    data["completed_runs"] = {}
    (experiment_dir / "checkpoint.json").write_text(json.dumps(data))
    result = pytester.runpytest("--rebuild-checkpoint", "--resume")
    result.stdout.fnmatch_lines(
        [
            "  rebuilt completed_runs:  4",
            "expresume: resuming demo at *: 4 of 8 runs done, 4 to run",
        ]
    )
    result.assert_outcomes(passed=4, deselected=4)
    assert len(executions(pytester)) == 8


def test_foreign_and_broken_result_files(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=8)
    pytester.runpytest().assert_outcomes(passed=8)
    experiment_dir = only_experiment_dir(pytester)
    outside = pytester.path / "elsewhere.json"
    outside.write_text(json.dumps({"expresume": {"status": "passed"}}))

    def put(run: int, content: Any) -> Path:
        path = experiment_dir / "T0" / "00" / f"run_{run:02d}" / "run_result.json"
        path.unlink()
        if isinstance(content, Path):
            path.symlink_to(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    put(1, {"verdict": "PASS"})  # the hook knows this one
    put(2, {"judge_passed": False})
    truncated = put(3, '{"expresume": {"status": "pass')
    listed = put(4, [1, 2])
    statusless = put(5, {"score": 3})
    symlink = put(6, outside)
    pytester.makeconftest(
        """
        def pytest_expresume_result_status(result, path):
            if "verdict" in result:
                return "passed" if result["verdict"] == "PASS" else "failed"
        """
    )
    result = pytester.runpytest("--rebuild-checkpoint")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "  original completed_runs: 8",
            "  rebuilt completed_runs:  4",
            "  difference:              -4",
            f"  not used: {truncated}: not valid JSON (truncated or garbled)",
            f"  not used: {listed}: holds a JSON list, not an object",
            f"  not used: {statusless}: gives no status*",
            f"  not used: {symlink}: a symlink pointing outside the experiment dir (not followed)",
        ]
    )
    assert statuses(experiment_dir) == {
        "T0/00/1": "passed",
        "T0/00/2": "failed",
        "T0/00/7": "passed",
        "T0/00/8": "passed",
    }


def test_reconciles_a_result_file_the_checkpoint_missed(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    pytester.runpytest("-k", "T0")
    experiment_dir = only_experiment_dir(pytester)
    # A run that finished just before a kill -9: its file is there, its record is not.
    run_dir = experiment_dir / "T1" / "00" / "run_01"
    run_dir.mkdir(parents=True)
    (run_dir / "run_result.json").write_text(
        json.dumps({"score": 1, "expresume": {"status": "failed", "message": "no"}})
    )
    result = pytester.runpytest("-v")
    result.stdout.fnmatch_lines(
        [
            "expresume: resuming demo at *: 5 of 8 runs done, 3 to run",
            "expresume: reconciled 1 runs whose result files the checkpoint did not list",
        ]
    )
    result.assert_outcomes(passed=3, deselected=5)
    assert "T1/00/1" not in executions(pytester)
    assert statuses(experiment_dir)["T1/00/1"] == "failed"


def test_reconciled_runs_are_kept_even_when_nothing_runs(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, tiers=["T0"], subtests=["00"], runs_per_subtest=2)
    pytester.runpytest("-k", "run_01")
    experiment_dir = only_experiment_dir(pytester)
    run_dir = experiment_dir / "T0" / "00" / "run_02"
    run_dir.mkdir(parents=True)
    (run_dir / "run_result.json").write_text(json.dumps({"expresume": {"status": "passed"}}))
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.OK
    assert statuses(experiment_dir) == {"T0/00/1": "passed", "T0/00/2": "passed"}
    assert checkpoint_json(experiment_dir)["status"] == "completed"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b'{"version": 1, "experiment_id": "demo", "completed_runs": {"T0": {"0',
            "not valid JSON*",
        ),
        (b"\x00\x17garbage\xff", "not valid JSON*"),
        (b"", "empty"),
        (b"[1, 2, 3]", "it holds a JSON list, not an object"),
        (
            b'{"version": 1, "experiment_id": "demo", "config_hash": "x", "completed_runs": []}',
            "completed_runs is not an object",
        ),
    ],
    ids=["truncated", "garbage", "empty", "not-an-object", "wrong-shape"],
)
def test_corrupt_checkpoint_is_set_aside_and_rebuilt(
    pytester: pytest.Pytester, content: bytes, reason: str
) -> None:
    write_experiment(pytester)
    pytester.runpytest("-k", "T0")
    experiment_dir = only_experiment_dir(pytester)
    (experiment_dir / "checkpoint.json").write_bytes(content)

    status = pytester.runpytest("--experiment-status")
    assert status.ret == pytest.ExitCode.OK
    status.stdout.fnmatch_lines(
        ["total*8*4*0*0*0*4*100.0%", "note: the checkpoint cannot be read*"]
    )
    assert (experiment_dir / "checkpoint.json").read_bytes() == content  # status only reads

    result = pytester.runpytest()
    result.assert_outcomes(passed=4, deselected=4, warnings=1)
    # Said once, as a warning located at the copy set aside.
    result.stdout.fnmatch_lines(
        [
            "*warnings summary*",
            "results/*-demo/checkpoint.json.corrupt-*:0",
            f"*ExpresumeWarning: expresume: the checkpoint was corrupt (*{reason}*); it was set "
            "aside as checkpoint.json.corrupt-* and rebuilt from 4 result files",
        ]
    )
    assert result.stdout.str().count("the checkpoint was corrupt") == 1
    assert "Traceback" not in result.stdout.str()
    aside = list(experiment_dir.glob("checkpoint.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == content
    assert len(statuses(experiment_dir)) == 8
    assert sorted(executions(pytester)) == sorted(
        f"{t}/{s}/{r}" for t in ("T0", "T1") for s in ("00", "01") for r in (1, 2)
    )


def test_experiment_status_prints_the_table_and_runs_nothing(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, behaviour={"T0-00-1": "fail", "T0-00-2": "error", "T0-01-1": "skip"})
    pytester.runpytest("-k", "T0")
    experiment_dir = only_experiment_dir(pytester)
    before = tree_digest(pytester.path)
    result = pytester.runpytest("--experiment-status", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            f"expresume: demo at {experiment_dir}",
            "tier*runs*passed*failed*error*skipped*pending*pass rate",
            "T0*4*1*1*1*1*0*50.0%",
            "T1*4*0*0*0*0*4*-",
            "total*8*1*1*1*1*4*50.0%",
            "state: interrupted, last update 20*",
        ]
    )
    assert tree_digest(pytester.path) == before
    assert len(executions(pytester)) == 4

    # A directory someone handed over: no config file, only --experiment-dir.
    pytester.path.joinpath("experiment.json").unlink()
    pytester.makeini("[pytest]\n")
    handed = pytester.runpytest("--experiment-status", "--experiment-dir", str(experiment_dir))
    assert handed.ret == pytest.ExitCode.OK
    handed.stdout.fnmatch_lines(["total*8*1*1*1*1*4*50.0%"])


def test_older_layout_resumes_and_keeps_its_fields(pytester: pytest.Pytester) -> None:
    experiment_dir = pytester.path / "results" / "2026-01-20T06-50-26-old"
    (experiment_dir / "config").mkdir(parents=True)
    (experiment_dir / "config" / "experiment.json").write_text(
        json.dumps(
            {
                "experiment_id": "old",
                "tiers_to_run": ["T0"],
                "subtests": ["00"],
                "runs_per_subtest": 3,
            }
        )
    )
    (experiment_dir / "checkpoint.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "experiment_id": "old",
                "experiment_dir": str(experiment_dir),
                "config_hash": "0123456789abcdef",
                "completed_runs": {"T0": {"00": {"1": "passed", "3": "agent_complete"}}},
                "status": "paused_rate_limit",
                "started_at": "2026-01-20T06:50:26+00:00",
                "last_updated_at": "2026-01-20T07:00:00+00:00",
                "rate_limit_source": "judge",
                "rate_limit_until": None,
                "pause_count": 1,
                "pid": 99,
            }
        )
    )
    pytester.makepyfile(test_agent=AGENT_TEST)
    result = pytester.runpytest("--resume", "--experiment-dir", str(experiment_dir), "-v")
    result.stdout.fnmatch_lines(["expresume: resuming old at *: 1 of 3 runs done, 2 to run"])
    result.assert_outcomes(passed=2, deselected=1)
    data = checkpoint_json(experiment_dir)
    assert data["version"] == 1
    assert (data["rate_limit_source"], data["pause_count"], data["pid"]) == ("judge", 1, 99)
    assert data["completed_runs"]["T0"]["00"] == {"1": "passed", "2": "passed", "3": "passed"}
    assert data["status"] == "completed"


def test_python_api_without_pytest(pytester: pytest.Pytester) -> None:
    write_experiment(pytester, behaviour={"T0-00-1": "fail"})
    pytester.runpytest("-k", "T0")
    experiment_dir = only_experiment_dir(pytester)
    from pytest_expresume import (
        RunKey,
        load_checkpoint,
        read_experiment_status,
        rebuild_checkpoint,
    )

    checkpoint = load_checkpoint(experiment_dir)
    assert checkpoint.completed_runs[RunKey("T0", "00", 1)] == "failed"
    assert checkpoint.counts() == {"passed": 3, "failed": 1, "error": 0, "skipped": 0}
    report = rebuild_checkpoint(experiment_dir)
    assert (report.original_count, report.rebuilt_count) == (4, 4)
    status = read_experiment_status(experiment_dir)
    assert status.total.runs == 8
    assert status.total.pending == 4
    assert status.total.counts["failed"] == 1


@pytest.mark.parametrize("command", ["--rebuild-checkpoint", "--experiment-status"])
def test_commands_on_a_dir_that_is_not_an_experiment(
    pytester: pytest.Pytester, command: str
) -> None:
    pytester.mkdir("empty")
    for target in ("missing", "empty"):
        result = pytester.runpytest(command, "--experiment-dir", target, "-p", "no:cacheprovider")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"ERROR: expresume: --experiment-dir */{target} is not an*"])
    nothing = pytester.runpytest(command, "-p", "no:cacheprovider")
    assert nothing.ret == pytest.ExitCode.USAGE_ERROR
    nothing.stderr.fnmatch_lines(["ERROR: expresume: no experiment given: use --experiment-dir*"])


def test_results_root_that_is_a_file(pytester: pytest.Pytester) -> None:
    write_experiment(pytester)
    pytester.path.joinpath("results").write_text("not a dir")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: expresume: the results root */results is not a directory"])


def test_rebuild_that_cannot_write_leaves_the_checkpoint_intact(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_experiment(pytester)
    pytester.runpytest("-k", "T0")
    experiment_dir = only_experiment_dir(pytester)
    before = tree_digest(experiment_dir)
    real_open = os.open

    def no_new_checkpoint(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        # As root, permissions do not stop us: refuse the checkpoint's temp file instead.
        if ".checkpoint.json.tmp-" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", no_new_checkpoint)
    result = pytester.runpytest("--rebuild-checkpoint", "-p", "no:cacheprovider")
    monkeypatch.undo()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: expresume: cannot rebuild the checkpoint of *: Permission denied "
            "(*.checkpoint.json.tmp-*); the checkpoint is left as it was"
        ]
    )
    after = tree_digest(experiment_dir)
    assert {k: v for k, v in after.items() if ".bak-" not in k} == before
