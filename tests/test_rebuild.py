"""rebuild_checkpoint and recover_checkpoint on experiment dirs built by hand."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from expresume_testing import EXPERIMENT, journal_records, snapshot_tree, write_json, write_result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_expresume import store as store_module
from pytest_expresume.config import config_hash
from pytest_expresume.grid import RunKey
from pytest_expresume.layout import save_config
from pytest_expresume.rebuild import RebuildReport, rebuild_checkpoint, recover_checkpoint
from pytest_expresume.store import (
    CHECKPOINT_NAME,
    JOURNAL_NAME,
    LOCK_NAME,
    Checkpoint,
    CheckpointStore,
)

STARTED = "2026-01-20T06:50:26+00:00"

#: The field case: tiers of agent set-ups with their subtests, 10 runs each = 590 runs.
FIELD_TIERS = {"T0": 9, "T1": 9, "T2": 9, "T3": 8, "T4": 8, "T5": 8, "T6": 8}
FIELD_RUNS = 10


def own(status: str, finished_at: str | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"status": status, "tier": "x", "run": 1}
    if finished_at is not None:
        fields["finished_at"] = finished_at
    return {"score": 3, "expresume": fields}


def checkpoint_on_disk(exp: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((exp / CHECKPOINT_NAME).read_text())
    return data


def flat_runs(data: dict[str, Any]) -> dict[RunKey, str]:
    return {
        RunKey(tier, subtest, int(run)): status
        for tier, subtests in data["completed_runs"].items()
        for subtest, runs in subtests.items()
        for run, status in runs.items()
    }


def journal_size(exp: Path) -> int:
    """The bytes of the journal's records (its first line, the generation, is not one)."""
    return sum(len(line) + 1 for line in journal_records(exp))


def aside(exp: Path, pattern: str) -> list[Path]:
    return sorted(exp.glob(pattern))


def v1_checkpoint(exp: Path, completed: dict[RunKey, str], **fields: Any) -> Checkpoint:
    return Checkpoint(
        experiment_id="test-001",
        experiment_dir=str(exp),
        config_hash="sha256:" + "cd" * 32,
        completed_runs=dict(completed),
        status=fields.pop("status", "running"),
        started_at=STARTED,
        last_updated_at="2026-01-20T07:00:00+00:00",
        **fields,
    )


def write_v1(exp: Path, checkpoint: Checkpoint) -> bytes:
    data = json.dumps(checkpoint.to_json(), indent=2).encode()
    (exp / CHECKPOINT_NAME).write_bytes(data)
    return data


def journal_line(**record: Any) -> bytes:
    return json.dumps(record).encode() + b"\n"


# -- the field case --


def field_case(exp: Path) -> tuple[bytes, dict[RunKey, str]]:
    """590 result files judged by the old tool, and a checkpoint that lost them all."""
    expected: dict[RunKey, str] = {}
    for tier, subtests in FIELD_TIERS.items():
        for s in range(subtests):
            for run in range(1, FIELD_RUNS + 1):
                key = RunKey(tier, f"{s:02d}", run)
                judged = (s + run) % 3 != 0
                write_result(exp, key, {"judge_passed": judged, "scores": [0.5, 0.9], "cost": 0.12})
                expected[key] = "passed" if judged else "failed"
    old = {
        "version": "2.0",
        "experiment_id": "test-001",
        "experiment_dir": str(exp),
        "config_hash": "9f2c6e",
        "completed_runs": {},
        "status": "interrupted",
        "started_at": STARTED,
        "last_updated_at": "2026-01-20T07:17:17+00:00",
        "rate_limit_source": "anthropic",
        "pause_count": 3,
        "pid": 48213,
    }
    original = json.dumps(old, indent=2).encode() + b"\n"
    (exp / CHECKPOINT_NAME).write_bytes(original)
    return original, expected


def test_the_field_case_is_rebuilt(exp: Path) -> None:
    assert sum(FIELD_TIERS.values()) * FIELD_RUNS == 590
    original, expected = field_case(exp)

    report = rebuild_checkpoint(exp)

    assert report.original_count == 0
    assert report.rebuilt_count == 590
    assert report.scan.problems == []
    assert report.checkpoint.completed_runs == expected
    saved = checkpoint_on_disk(exp)
    assert flat_runs(saved) == expected
    assert saved["version"] == 1
    assert saved["experiment_id"] == "test-001"
    assert saved["config_hash"] == "9f2c6e"
    assert saved["status"] == "interrupted"
    assert saved["started_at"] == STARTED
    assert saved["last_updated_at"] == "2026-01-20T07:17:17+00:00"
    assert saved["rate_limit_source"] == "anthropic"
    assert saved["pause_count"] == 3
    assert saved["pid"] == 48213
    (backup,) = aside(exp, "checkpoint.json.bak-*")
    assert backup.read_bytes() == original
    assert report.backups == [backup]
    assert journal_size(exp) == 0
    assert CheckpointStore(exp).load().completed_runs == expected

    lines = report.lines()
    assert "  original completed_runs: 0" in lines
    assert "  rebuilt completed_runs:  590" in lines
    assert "  difference:              +590" in lines
    for tier, subtests in FIELD_TIERS.items():
        runs = subtests * FIELD_RUNS
        failed = sum(1 for k, s in expected.items() if k.tier == tier and s == "failed")
        assert f"  {tier}: {runs} runs ({failed} failed, {runs - failed} passed)" in lines


def test_the_field_case_twice_gives_the_same_bytes(exp: Path) -> None:
    original, _ = field_case(exp)
    first = rebuild_checkpoint(exp, fsync=False)
    once = (exp / CHECKPOINT_NAME).read_bytes()
    second = rebuild_checkpoint(exp, fsync=False)
    assert (exp / CHECKPOINT_NAME).read_bytes() == once
    assert first.checkpoint == second.checkpoint
    assert second.original_count == 590
    assert second.rebuilt_count == 590
    assert "  difference:              +0" in second.lines()
    # Each rebuild made its own backup; the first still holds the original bytes.
    backups = aside(exp, "checkpoint.json.bak-*")
    assert len(backups) == 2
    contents = {path.read_bytes() for path in backups}
    assert contents == {original, once}
    assert first.backups[0].read_bytes() == original
    assert second.backups[0].read_bytes() == once


def test_the_backup_is_written_before_the_checkpoint_is_replaced(
    exp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original, _ = field_case(exp)
    journal = journal_line(tier="T0", subtest="00", run=1, status="error", at="t")
    (exp / JOURNAL_NAME).write_bytes(journal)
    real_write = store_module.write_atomic
    seen: list[tuple[bytes, bytes]] = []

    def checking_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
        (checkpoint_backup,) = aside(exp, "checkpoint.json.bak-*")
        (journal_backup,) = aside(exp, "checkpoint.journal.bak-*")
        seen.append((checkpoint_backup.read_bytes(), journal_backup.read_bytes()))
        assert (exp / CHECKPOINT_NAME).read_bytes() == original
        real_write(path, data, fsync=fsync)

    monkeypatch.setattr(store_module, "write_atomic", checking_write)
    rebuild_checkpoint(exp, fsync=False)
    assert seen == [(original, journal)]


# -- the journal --


def test_a_non_empty_journal_is_backed_up_then_emptied(exp: Path) -> None:
    keys = [RunKey("T0", "00", run) for run in (1, 2, 3)]
    for key in keys:
        write_result(exp, key, own("passed"))
    original = write_v1(exp, v1_checkpoint(exp, {keys[0]: "passed"}))
    journal = (
        journal_line(tier="T0", subtest="00", run=2, status="passed", at="2026-01-20T07:01")
        + journal_line(experiment_status="interrupted", at="2026-01-20T07:02")
        + b'{"tier": "T0", "subt'
    )
    (exp / JOURNAL_NAME).write_bytes(journal)

    report = rebuild_checkpoint(exp, fsync=False)

    assert report.original_count == 2  # the snapshot and the journal's record
    assert report.rebuilt_count == 3
    assert report.checkpoint.completed_runs == dict.fromkeys(keys, "passed")
    assert report.checkpoint.status == "interrupted"
    (checkpoint_backup,) = aside(exp, "checkpoint.json.bak-*")
    (journal_backup,) = aside(exp, "checkpoint.journal.bak-*")
    assert checkpoint_backup.read_bytes() == original
    assert journal_backup.read_bytes() == journal
    assert sorted(report.backups) == sorted([checkpoint_backup, journal_backup])
    assert journal_size(exp) == 0
    assert flat_runs(checkpoint_on_disk(exp)) == dict.fromkeys(keys, "passed")
    assert "  difference:              +1" in report.lines()


def test_an_empty_journal_is_not_backed_up(exp: Path) -> None:
    write_result(exp, RunKey("T0", "00", 1), own("passed"))
    write_v1(exp, v1_checkpoint(exp, {}))
    (exp / JOURNAL_NAME).write_bytes(b"")
    report = rebuild_checkpoint(exp, fsync=False)
    assert aside(exp, "checkpoint.journal.bak-*") == []
    assert len(report.backups) == 1


def test_runs_the_checkpoint_listed_without_a_result_file_are_dropped_and_said(
    exp: Path,
) -> None:
    kept, lost, corrupt = RunKey("T0", "00", 1), RunKey("T0", "00", 2), RunKey("T1", "00", 1)
    write_result(exp, kept, own("passed"))
    bad = write_result(exp, corrupt, [1, 2])
    write_v1(exp, v1_checkpoint(exp, {kept: "passed", lost: "failed", corrupt: "error"}))

    report = rebuild_checkpoint(exp, fsync=False)

    assert report.checkpoint.completed_runs == {kept: "passed"}
    assert list(report.unbacked) == [lost, corrupt]
    lines = report.lines()
    assert "  original completed_runs: 3" in lines
    assert "  rebuilt completed_runs:  1" in lines
    assert "  difference:              -2" in lines
    assert any(str(bad) in line and "list" in line for line in lines)
    assert (
        "  dropped: T0/00/run 2 was in the checkpoint as 'failed', but no run dir for it "
        "exists (looked in T0/00/run_02)"
    ) in lines
    assert (
        f"  dropped: T1/00/run 1 was in the checkpoint as 'error', but its result file {bad} "
        "is not usable: holds a JSON list, not an object"
    ) in lines


# -- corrupt checkpoints --

GARBAGE = b'{"version": 1, "experiment_id": "test-001", "completed_runs": {"T0": {"00": {"1'


def test_set_aside_corrupt_renames_the_checkpoint_and_rebuilds(exp: Path) -> None:
    keys = {RunKey("T0", "00", 1): "passed", RunKey("T0", "01", 1): "error"}
    for key, status in keys.items():
        write_result(exp, key, own(status))
    (exp / CHECKPOINT_NAME).write_bytes(GARBAGE)

    report = rebuild_checkpoint(exp, fsync=False, set_aside_corrupt=True)

    (corrupt,) = aside(exp, "checkpoint.json.corrupt-*")
    assert corrupt.read_bytes() == GARBAGE
    assert report.set_aside == corrupt
    assert report.corruption is not None
    assert "JSON" in report.corruption
    assert aside(exp, "checkpoint.json.bak-*") == []
    assert report.original_count is None
    assert report.checkpoint.completed_runs == keys
    assert flat_runs(checkpoint_on_disk(exp)) == keys
    lines = report.lines()
    assert "  original completed_runs: unreadable" in lines
    assert "  rebuilt completed_runs:  2" in lines
    assert "  difference:              +2" in lines
    assert f"  set aside as {corrupt.name}" in lines
    assert any("corrupt" in line and report.corruption in line for line in lines)


def test_without_set_aside_a_corrupt_checkpoint_is_backed_up(exp: Path) -> None:
    write_result(exp, RunKey("T0", "00", 1), own("failed"))
    (exp / CHECKPOINT_NAME).write_bytes(GARBAGE)
    report = rebuild_checkpoint(exp, fsync=False)
    (backup,) = aside(exp, "checkpoint.json.bak-*")
    assert backup.read_bytes() == GARBAGE
    assert aside(exp, "checkpoint.json.corrupt-*") == []
    assert report.set_aside is None
    assert flat_runs(checkpoint_on_disk(exp)) == {RunKey("T0", "00", 1): "failed"}


def test_a_corrupt_checkpoint_set_aside_twice_keeps_both(exp: Path) -> None:
    (exp / CHECKPOINT_NAME).write_bytes(GARBAGE)
    rebuild_checkpoint(exp, fsync=False, set_aside_corrupt=True)
    (exp / CHECKPOINT_NAME).write_bytes(b"[]")
    rebuild_checkpoint(exp, fsync=False, set_aside_corrupt=True)
    contents = sorted(p.read_bytes() for p in aside(exp, "checkpoint.json.corrupt-*"))
    assert contents == sorted([GARBAGE, b"[]"])


def test_a_corrupt_checkpoint_replays_its_journal(exp: Path) -> None:
    write_result(exp, RunKey("T0", "00", 1), own("error"))
    (exp / CHECKPOINT_NAME).write_bytes(GARBAGE)
    (exp / JOURNAL_NAME).write_bytes(
        journal_line(tier="T0", subtest="00", run=1, status="error", at="2026-01-20T07:05")
        + journal_line(experiment_status="running", at="2026-01-20T07:06")
    )
    report = rebuild_checkpoint(exp, fsync=False, set_aside_corrupt=True)
    assert report.checkpoint.completed_runs == {RunKey("T0", "00", 1): "error"}
    assert report.checkpoint.status == "running"
    assert report.checkpoint.last_updated_at == "2026-01-20T07:06"
    assert journal_size(exp) == 0


# -- metadata without a readable checkpoint --


def test_without_a_checkpoint_the_metadata_comes_from_the_saved_config(tmp_path: Path) -> None:
    exp = tmp_path / "2026-01-20T06-50-26-demo"
    exp.mkdir()
    config = {
        "experiment_id": "demo",
        "tiers": ["T0"],
        "subtests": ["00"],
        "judges": ["opus", "sonnet", "haiku"],
        "timeout": 30,
        "runtime_keys": ["timeout"],
    }
    save_config(exp, config)
    write_result(exp, RunKey("T0", "00", 1), own("passed", "2026-01-20T07:00:00+00:00"))
    write_result(exp, RunKey("T0", "00", 2), own("failed", "2026-01-20T07:09:00+00:00"))
    write_result(exp, RunKey("T0", "00", 3), {"judge_passed": True})

    report = rebuild_checkpoint(exp, fsync=False)

    saved = checkpoint_on_disk(exp)
    assert saved["experiment_id"] == "demo"
    assert saved["config_hash"] == config_hash(config)
    assert saved["config_hash"].startswith("sha256:")
    assert saved["experiment_dir"] == str(exp.resolve())
    assert saved["started_at"] == STARTED
    assert saved["last_updated_at"] == "2026-01-20T07:09:00+00:00"
    assert saved["status"] == "interrupted"
    assert flat_runs(saved) == {
        RunKey("T0", "00", 1): "passed",
        RunKey("T0", "00", 2): "failed",
        RunKey("T0", "00", 3): "passed",
    }
    assert report.original_count is None
    assert report.backups == []


def test_without_checkpoint_or_config_the_dir_name_gives_the_metadata(exp: Path) -> None:
    write_result(exp, RunKey("T0", "00", 1), own("skipped"))
    rebuild_checkpoint(exp, fsync=False)
    saved = checkpoint_on_disk(exp)
    assert saved["experiment_id"] == "test-001"
    assert saved["config_hash"] == ""
    assert saved["started_at"] == STARTED
    assert saved["experiment_dir"] == str(exp.resolve())
    assert saved["status"] == "interrupted"
    assert flat_runs(saved) == {RunKey("T0", "00", 1): "skipped"}


def test_an_unreadable_checkpoint_object_gives_its_fields(exp: Path) -> None:
    save_config(exp, {"experiment_id": "from-config", "tiers": ["T0"]})
    broken = {
        "version": 99,
        "experiment_id": "from-raw",
        "config_hash": "sha256:raw",
        "started_at": "2026-01-01T00:00:00+00:00",
        "completed_runs": "lost",
        "pid": 7,
        "rate_limit_source": None,
    }
    write_json(exp / CHECKPOINT_NAME, broken)
    write_result(exp, RunKey("T0", "00", 1), own("passed"))

    report = rebuild_checkpoint(exp, fsync=False, set_aside_corrupt=True)

    assert report.corruption is not None
    assert "99" in report.corruption
    saved = checkpoint_on_disk(exp)
    assert saved["experiment_id"] == "from-raw"
    assert saved["config_hash"] == "sha256:raw"
    assert saved["started_at"] == "2026-01-01T00:00:00+00:00"
    assert saved["pid"] == 7
    assert saved["rate_limit_source"] is None
    assert saved["version"] == 1
    assert flat_runs(saved) == {RunKey("T0", "00", 1): "passed"}


# -- completed or interrupted --

GRID = {RunKey(t, s, r) for t in ("T0", "T1") for s in ("00", "01") for r in (1, 2)}


ALL_PASSED = dict.fromkeys(GRID, "passed")
ONE_ERROR = {**ALL_PASSED, RunKey("T1", "01", 2): "error"}
ONE_FAILED = {**ALL_PASSED, RunKey("T0", "01", 1): "failed"}
ONE_SKIPPED = {**dict.fromkeys(GRID, "failed"), RunKey("T0", "00", 1): "skipped"}
ONE_MISSING = {k: s for k, s in ALL_PASSED.items() if k != RunKey("T0", "01", 2)}
ERROR = frozenset({"error"})


@pytest.mark.parametrize(
    ("statuses", "rerun", "state"),
    [
        (ALL_PASSED, ERROR, "completed"),
        (ONE_SKIPPED, frozenset(), "completed"),
        (ONE_ERROR, ERROR, "interrupted"),
        (ONE_ERROR, frozenset(), "completed"),
        (ONE_FAILED, frozenset({"failed"}), "interrupted"),
        (ONE_FAILED, ERROR, "completed"),
        (ONE_MISSING, ERROR, "interrupted"),
        ({}, ERROR, "interrupted"),
    ],
)
def test_grid_keys_decide_completed_or_interrupted(
    exp: Path, statuses: dict[RunKey, str], rerun: frozenset[str], state: str
) -> None:
    for key, status in statuses.items():
        write_result(exp, key, own(status))
    write_result(exp, RunKey("T9", "00", 1), own("error"))  # outside the grid: no say
    write_v1(exp, v1_checkpoint(exp, {}, status="running"))
    report = rebuild_checkpoint(exp, fsync=False, grid_keys=set(GRID), rerun=rerun)
    assert report.checkpoint.status == state
    assert checkpoint_on_disk(exp)["status"] == state


def test_without_grid_keys_the_old_status_is_kept(exp: Path) -> None:
    for key in GRID:
        write_result(exp, key, own("passed"))
    write_v1(exp, v1_checkpoint(exp, {}, status="running"))
    assert rebuild_checkpoint(exp, fsync=False).checkpoint.status == "running"


# -- the report --


def test_report_lines_name_counts_tiers_and_every_problem(exp: Path) -> None:
    write_result(exp, RunKey("T0", "00", 1), own("passed"))
    write_result(exp, RunKey("T0", "00", 2), own("passed"))
    write_result(exp, RunKey("T0", "01", 1), own("error"))
    write_result(exp, RunKey("T1", "00", 1), {"judge_passed": False})
    write_result(exp, RunKey("T1", "00", 2), own("skipped"))
    problems = [
        write_result(exp, RunKey("T0", "00", 3), {"no": "status"}),
        write_result(exp, RunKey("T1", "01", 1), "a string"),
    ]
    truncated = exp / "T2" / "00" / "run_01" / "run_result.json"
    truncated.parent.mkdir(parents=True)
    truncated.write_bytes(b'{"judge_passed": tr')
    problems.append(truncated)
    write_v1(exp, v1_checkpoint(exp, {RunKey("T0", "00", 1): "passed"}))

    report = rebuild_checkpoint(exp, fsync=False)
    lines = report.lines()

    assert lines[0] == f"expresume: rebuilt the checkpoint of {exp}"
    assert "  original completed_runs: 1" in lines
    assert "  rebuilt completed_runs:  5" in lines
    assert "  difference:              +4" in lines
    assert "  T0: 3 runs (1 error, 2 passed)" in lines
    assert "  T1: 2 runs (1 failed, 1 skipped)" in lines
    assert not any(line.startswith("  T2:") for line in lines)
    for path in problems:
        assert sum(f"not used: {path}:" in line for line in lines) == 1
    (backup,) = report.backups
    assert f"  backup: {backup.name}" in lines
    assert report.per_tier() == {
        "T0": {"passed": 2, "error": 1},
        "T1": {"failed": 1, "skipped": 1},
    }


def test_rebuilding_an_empty_dir_reports_nothing_found(exp: Path) -> None:
    report = rebuild_checkpoint(exp, fsync=False)
    assert isinstance(report, RebuildReport)
    assert report.rebuilt_count == 0
    assert report.checkpoint.completed_runs == {}
    assert "  rebuilt completed_runs:  0" in report.lines()
    assert "  original completed_runs: unreadable" in report.lines()
    assert flat_runs(checkpoint_on_disk(exp)) == {}


def test_the_result_status_hook_is_used(exp: Path) -> None:
    write_result(exp, RunKey("T0", "00", 1), {"verdict": "yes"})
    write_result(exp, RunKey("T0", "00", 2), {"verdict": "no"})
    write_result(exp, RunKey("T0", "00", 3), {"verdict": "dunno"})

    def hook(data: dict[str, Any], path: Path) -> str | None:
        return {"yes": "passed", "no": "failed"}.get(data["verdict"])

    report = rebuild_checkpoint(exp, fsync=False, result_status=hook)
    assert report.checkpoint.completed_runs == {
        RunKey("T0", "00", 1): "passed",
        RunKey("T0", "00", 2): "failed",
    }
    assert [p for p, _ in report.scan.problems] == [
        exp / "T0" / "00" / "run_03" / "run_result.json"
    ]


# -- idempotence gaps --


def test_rebuilding_a_2_0_checkpoint_with_foreign_statuses_twice_gives_the_same_bytes(
    exp: Path,
) -> None:
    write_result(exp, RunKey("T0", "00", 1), {"judge_passed": True})
    write_result(exp, RunKey("T1", "00", 1), {"judge_passed": True})
    old = {
        "version": "2.0",
        "experiment_id": "test-001",
        "config_hash": "h",
        "completed_runs": {"T1": {"00": {"1": "agent_complete"}}},
    }
    write_json(exp / CHECKPOINT_NAME, old)
    rebuild_checkpoint(exp, fsync=False)
    once = (exp / CHECKPOINT_NAME).read_bytes()
    rebuild_checkpoint(exp, fsync=False)
    assert (exp / CHECKPOINT_NAME).read_bytes() == once


def test_foreign_statuses_without_a_result_file_are_kept(exp: Path) -> None:
    write_result(exp, RunKey("T0", "00", 1), {"judge_passed": False})
    old = {
        "version": "2.0",
        "experiment_id": "test-001",
        "config_hash": "h",
        "completed_runs": {"T0": {"00": {"1": "passed", "2": "agent_complete"}}},
    }
    write_json(exp / CHECKPOINT_NAME, old)
    report = rebuild_checkpoint(exp, fsync=False)
    assert report.checkpoint.completed_runs == {RunKey("T0", "00", 1): "failed"}
    assert checkpoint_on_disk(exp)["completed_runs"] == {
        "T0": {"00": {"1": "failed", "2": "agent_complete"}}
    }


def test_a_corrupt_checkpoint_with_a_journal_rebuilt_twice_gives_the_same_bytes(
    exp: Path,
) -> None:
    write_result(exp, RunKey("T0", "00", 1), own("passed"))
    # Run 2 errored, was recorded, and its rerun moved the dir aside before starting.
    attempt = exp / "T0" / "00" / ".attempts" / "run_02-1" / "run_result.json"
    write_json(attempt, own("error"))
    (exp / "T0" / "00" / "run_02").mkdir()
    (exp / CHECKPOINT_NAME).write_bytes(GARBAGE)
    (exp / JOURNAL_NAME).write_bytes(
        journal_line(tier="T0", subtest="00", run=1, status="passed", at="2026-01-20T07:01")
        + journal_line(tier="T0", subtest="00", run=2, status="error", at="2026-01-20T07:02")
    )
    rebuild_checkpoint(exp, fsync=False, set_aside_corrupt=True)
    once = (exp / CHECKPOINT_NAME).read_bytes()
    rebuild_checkpoint(exp, fsync=False, set_aside_corrupt=True)
    assert (exp / CHECKPOINT_NAME).read_bytes() == once


# -- recover_checkpoint: read-only --


def test_recover_a_corrupt_checkpoint_reads_only_and_trusts_files_over_the_journal(
    exp: Path,
) -> None:
    save_config(exp, {"experiment_id": "test-001", "tiers": ["T0"]})
    write_result(exp, RunKey("T0", "00", 1), own("passed"))
    write_result(exp, RunKey("T0", "00", 2), own("error"))
    write_result(exp, RunKey("T0", "00", 3), [])
    (exp / CHECKPOINT_NAME).write_bytes(GARBAGE)
    (exp / JOURNAL_NAME).write_bytes(
        journal_line(tier="T0", subtest="00", run=2, status="passed", at="2026-01-20T07:03")
        + journal_line(tier="T0", subtest="01", run=1, status="failed", at="2026-01-20T07:04")
        + b'{"torn'
    )
    before = snapshot_tree(exp)

    checkpoint, corruption = recover_checkpoint(exp)

    assert snapshot_tree(exp) == before
    assert not (exp / LOCK_NAME).exists()
    assert corruption
    assert checkpoint.experiment_id == "test-001"
    # A result file is written before its journal record, so the files are never older
    # than the journal; a record whose file is gone (moved to .attempts/) is stale.
    assert checkpoint.completed_runs == {
        RunKey("T0", "00", 1): "passed",
        RunKey("T0", "00", 2): "error",
    }


def test_recover_a_missing_checkpoint_reads_only(exp: Path) -> None:
    write_result(exp, RunKey("T0", "00", 1), own("skipped"))
    before = snapshot_tree(exp)
    checkpoint, corruption = recover_checkpoint(exp)
    assert snapshot_tree(exp) == before
    assert corruption
    assert checkpoint.completed_runs == {RunKey("T0", "00", 1): "skipped"}
    assert checkpoint.experiment_id == "test-001"


def test_recover_a_readable_checkpoint_gives_it_with_its_journal(exp: Path) -> None:
    write_result(exp, RunKey("T0", "00", 1), own("failed"))  # not consulted: the checkpoint is fine
    write_v1(exp, v1_checkpoint(exp, {RunKey("T0", "00", 1): "passed"}, extra={"pid": 4}))
    (exp / JOURNAL_NAME).write_bytes(
        journal_line(tier="T0", subtest="00", run=2, status="error", at="2026-01-20T07:08")
    )
    (exp / LOCK_NAME).write_bytes(b"")  # a writer has been here
    before = snapshot_tree(exp)

    checkpoint, corruption = recover_checkpoint(exp)

    assert snapshot_tree(exp) == before
    assert corruption == ""
    assert checkpoint.completed_runs == {
        RunKey("T0", "00", 1): "passed",
        RunKey("T0", "00", 2): "error",
    }
    assert checkpoint.extra == {"pid": 4}


# -- a property: the valid files, their statuses, and the same bytes twice --

KEYS = [RunKey(t, s, r) for t in ("T0", "T1") for s in ("00", "01") for r in (1, 2, 3)]
STATUSES = ("passed", "failed", "error", "skipped")
CORRUPT = {
    "truncated": b'{"expresume": {"status": "pa',
    "list": b'["passed"]',
    "no status": b'{"score": 1}',
    "bad status": b'{"expresume": {"status": "PASSED"}}',
    "empty": b"",
}

entry = st.one_of(
    st.tuples(st.just("own"), st.sampled_from(STATUSES), st.sampled_from(["", "2026-01-20T07:1"])),
    st.tuples(st.just("judge"), st.sampled_from(("passed", "failed")), st.just("")),
    st.tuples(st.just("corrupt"), st.sampled_from(sorted(CORRUPT)), st.just("")),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.dictionaries(st.sampled_from(KEYS), entry, max_size=len(KEYS)),
    minutes=st.dictionaries(st.sampled_from(KEYS), st.integers(0, 9)),
    old=st.sampled_from(["none", "readable", "garbage"]),
    old_runs=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(STATUSES)),
    set_aside=st.booleans(),
)
def test_rebuild_yields_exactly_the_valid_files(
    files: dict[RunKey, tuple[str, str, str]],
    minutes: dict[RunKey, int],
    old: str,
    old_runs: dict[RunKey, str],
    set_aside: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        exp = Path(tmp) / EXPERIMENT
        exp.mkdir()
        expected: dict[RunKey, str] = {}
        corrupt: list[Path] = []
        for key, (kind, value, stamp) in files.items():
            if kind == "own":
                finished = f"{stamp}{minutes.get(key, 0)}" if stamp else None
                path = write_result(exp, key, own(value, finished))
                expected[key] = value
            elif kind == "judge":
                path = write_result(exp, key, {"judge_passed": value == "passed"})
                expected[key] = value
            else:
                path = write_result(exp, key, None)
                path.write_bytes(CORRUPT[value])
                corrupt.append(path)
        if old == "readable":
            write_v1(exp, v1_checkpoint(exp, old_runs, extra={"pid": 1}))
        elif old == "garbage":
            (exp / CHECKPOINT_NAME).write_bytes(GARBAGE)

        report = rebuild_checkpoint(exp, fsync=False, set_aside_corrupt=set_aside)

        assert report.checkpoint.completed_runs == expected
        assert sorted(p for p, _ in report.scan.problems) == sorted(corrupt)
        once = (exp / CHECKPOINT_NAME).read_bytes()
        assert flat_runs(json.loads(once)) == expected
        assert CheckpointStore(exp).load().completed_runs == expected
        if old == "readable":
            assert report.original_count == len(old_runs)
            assert json.loads(once)["pid"] == 1

        again = rebuild_checkpoint(exp, fsync=False, set_aside_corrupt=set_aside)

        assert (exp / CHECKPOINT_NAME).read_bytes() == once
        assert again.original_count == len(expected)
        assert again.scan.problems == report.scan.problems
