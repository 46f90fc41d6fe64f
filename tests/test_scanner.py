"""The scanner: which result files count, what status each gives, and what is reported."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from expresume_testing import write_json, write_result

from pytest_expresume.grid import RunKey
from pytest_expresume.scanner import (
    ResultFile,
    ScanReport,
    UnusableResult,
    read_result_file,
    scan_result_files,
    unrecorded_results,
    unwhole_results,
)


def write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def result(exp: Path, tier: str, subtest: str, run_dir: str, value: Any) -> Path:
    return write_json(exp / tier / subtest / run_dir / "run_result.json", value)


def own(status: str, **fields: Any) -> dict[str, Any]:
    """A result as the plugin writes it: the test's dict plus ``expresume``."""
    return {"score": 1, "expresume": {"status": status, **fields}}


def statuses(report: ScanReport) -> dict[RunKey, str]:
    return {key: found.status for key, found in report.found.items()}


def problem_paths(report: ScanReport) -> list[Path]:
    return [path for path, _ in report.problems]


# -- which files count --


def test_only_the_result_file_of_a_run_dir_counts(exp: Path) -> None:
    counted = result(exp, "T0", "00", "run_01", own("passed"))
    # Deeper down: a workspace may hold anything, including another run_result.json.
    result(exp, "T0", "00", "run_01/workspace", own("failed"))
    result(exp, "T0", "00", "run_01/workspace/T0/00/run_02", own("failed"))
    # An earlier attempt, kept out of the way.
    result(exp, "T0", "00", ".attempts/run_01-1", own("error"))
    result(exp, "T0", "00", ".attempts/run_02-1", own("error"))
    # Wrong depths.
    write_json(exp / "run_result.json", own("failed"))
    write_json(exp / "T0" / "run_result.json", own("failed"))
    write_json(exp / "T0" / "00" / "run_result.json", own("failed"))
    write_json(exp / "T0" / "run_05" / "run_result.json", own("failed"))
    # Not a run dir name, or not a name at all.
    result(exp, "T0", "00", "run_", own("failed"))
    result(exp, "T0", "00", "run_x", own("failed"))
    result(exp, "T0", "00", "run_03-1", own("failed"))
    result(exp, "T0", "00", "Run_04", own("failed"))
    result(exp, "T0", "00", "run_05 copy", own("failed"))
    result(exp, "T 1", "00", "run_01", own("failed"))
    result(exp, "T0", "s@b", "run_01", own("failed"))
    result(exp, "Tö", "00", "run_01", own("failed"))
    result(exp, "T0", "0 0", "run_01", own("failed"))
    # A run dir without a result file (in flight) and a file named like a run dir.
    (exp / "T0" / "00" / "run_06").mkdir()
    write_bytes(exp / "T0" / "00" / "run_07", b'{"judge_passed": true}')
    # The experiment's own files.
    write_json(exp / "config" / "experiment.json", {"experiment_id": "test-001"})
    write_bytes(exp / "checkpoint.json", b"not looked at by the scanner")

    report = scan_result_files(exp)

    assert report.problems == []
    assert report.found == {RunKey("T0", "00", 1): ResultFile("passed", None)}
    assert counted.exists()


def test_every_run_of_every_tier_and_subtest_is_found(exp: Path) -> None:
    expected: dict[RunKey, str] = {}
    cycle = ["passed", "failed", "error", "skipped"]
    for t, tier in enumerate(["T0", "T1", "T6"]):
        for s, subtest in enumerate(["00", "01", "05-long.name_x"]):
            for run in range(1, 4):
                status = cycle[(t + s + run) % 4]
                result(exp, tier, subtest, f"run_{run:02d}", own(status))
                expected[RunKey(tier, subtest, run)] = status
    report = scan_result_files(exp)
    assert report.problems == []
    assert statuses(report) == expected


def test_an_empty_experiment_dir_finds_nothing(exp: Path) -> None:
    assert scan_result_files(exp) == ScanReport()


def test_a_missing_experiment_dir_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    report = scan_result_files(missing)
    assert report.found == {}
    assert problem_paths(report) == [missing]


@pytest.mark.parametrize(
    ("run_dir", "run"),
    [("run_1", 1), ("run_01", 1), ("run_001", 1), ("run_9", 9), ("run_10", 10), ("run_100", 100)],
)
def test_run_dir_names_map_to_int_runs(exp: Path, run_dir: str, run: int) -> None:
    result(exp, "T0", "00", run_dir, own("failed"))
    report = scan_result_files(exp)
    assert report.problems == []
    assert report.found == {RunKey("T0", "00", run): ResultFile("failed", None)}
    (key,) = report.found
    assert type(key.run) is int


def test_run_numbers_of_several_widths_side_by_side(exp: Path) -> None:
    result(exp, "T0", "00", "run_1", own("passed"))
    result(exp, "T0", "01", "run_01", own("failed"))
    result(exp, "T0", "01", "run_100", own("error"))
    result(exp, "T0", "01", "run_12", own("skipped"))
    assert statuses(scan_result_files(exp)) == {
        RunKey("T0", "00", 1): "passed",
        RunKey("T0", "01", 1): "failed",
        RunKey("T0", "01", 12): "skipped",
        RunKey("T0", "01", 100): "error",
    }


def test_a_valid_name_starting_with_a_dot_is_scanned(exp: Path) -> None:
    # check_name accepts ".T0"; ".attempts" inside a subtest never matches run_<N>.
    result(exp, "T1", ".s", ".attempts", own("error"))
    result(exp, ".T0", "00", "run_01", own("passed"))
    result(exp, "T1", ".s", "run_01", own("failed"))
    assert statuses(scan_result_files(exp)) == {
        RunKey(".T0", "00", 1): "passed",
        RunKey("T1", ".s", 1): "failed",
    }


# -- the status a file gives --


def test_expresume_status_wins_over_the_hook_and_judge_passed(exp: Path) -> None:
    path = result(
        exp,
        "T0",
        "00",
        "run_01",
        {"judge_passed": True, "expresume": {"status": "failed", "finished_at": "2026-01-20T07"}},
    )
    asked: list[Path] = []

    def hook(data: dict[str, Any], where: Path) -> str | None:
        asked.append(where)
        return "skipped"

    assert read_result_file(path, exp, hook) == ResultFile("failed", "2026-01-20T07")
    assert asked == []
    assert scan_result_files(exp, hook).found == {
        RunKey("T0", "00", 1): ResultFile("failed", "2026-01-20T07")
    }


def test_the_hook_wins_over_judge_passed(exp: Path) -> None:
    path = result(exp, "T0", "00", "run_01", {"judge_passed": True, "verdict": "meh"})
    asked: list[tuple[dict[str, Any], Path]] = []

    def hook(data: dict[str, Any], where: Path) -> str | None:
        asked.append((data, where))
        return "skipped"

    assert read_result_file(path, exp, hook) == ResultFile("skipped", None)
    assert asked == [({"judge_passed": True, "verdict": "meh"}, path)]


def test_a_hook_answering_none_falls_back_to_judge_passed(exp: Path) -> None:
    passed = result(exp, "T0", "00", "run_01", {"judge_passed": True})
    failed = result(exp, "T0", "00", "run_02", {"judge_passed": False})
    asked: list[Path] = []

    def hook(data: dict[str, Any], where: Path) -> str | None:
        asked.append(where)
        return None

    assert read_result_file(passed, exp, hook).status == "passed"
    assert read_result_file(failed, exp, hook).status == "failed"
    assert asked == [passed, failed]


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ({"judge_passed": True}, "passed"),
        ({"judge_passed": False}, "failed"),
        ({"judge_passed": False, "expresume": {"finished_at": "x"}}, "failed"),
        ({"judge_passed": True, "expresume": {"status": "error"}}, "error"),
        ({"expresume": {"status": "skipped"}}, "skipped"),
        ({"judge_passed": True, "expresume": "not an object"}, "passed"),
    ],
)
def test_status_without_a_hook(exp: Path, value: dict[str, Any], status: str) -> None:
    path = result(exp, "T0", "00", "run_01", value)
    assert read_result_file(path, exp).status == status
    assert statuses(scan_result_files(exp)) == {RunKey("T0", "00", 1): status}


def test_finished_at_is_kept_whichever_source_gives_the_status(exp: Path) -> None:
    path = result(
        exp, "T0", "00", "run_01", {"judge_passed": False, "expresume": {"finished_at": "T"}}
    )
    assert read_result_file(path, exp) == ResultFile("failed", "T")
    path = result(exp, "T0", "00", "run_02", {"expresume": {"status": "passed", "finished_at": 5}})
    assert read_result_file(path, exp) == ResultFile("passed", None)


@pytest.mark.parametrize("answer", ["PASSED", "ok", "", "agent_complete"])
def test_a_hook_answer_that_is_not_a_status_is_reported(exp: Path, answer: str) -> None:
    path = result(exp, "T0", "00", "run_01", {"judge_passed": True})
    result(exp, "T0", "00", "run_02", own("passed"))

    def hook(data: dict[str, Any], where: Path) -> str | None:
        return answer

    with pytest.raises(UnusableResult, match="pytest_expresume_result_status") as info:
        read_result_file(path, exp, hook)
    assert repr(answer) in str(info.value)

    report = scan_result_files(exp, hook)
    assert statuses(report) == {RunKey("T0", "00", 2): "passed"}
    assert len(report.problems) == 1
    where, reason = report.problems[0]
    assert where == path
    assert repr(answer) in reason


UNUSABLE: dict[str, bytes] = {
    "truncated": b'{"judge_passed": true, "expresume": {"status": "pas',
    "empty": b"",
    "a list": b'[{"judge_passed": true}]',
    "a string": b'"passed"',
    "a number": b"1",
    "null": b"null",
    "no status": b'{"score": 3, "expresume": {"nodeid": "x"}}',
    "unknown own status": b'{"expresume": {"status": "agent_complete"}}',
    "judge_passed not a bool": b'{"judge_passed": "true"}',
    "judge_passed null": b'{"judge_passed": null}',
    "not utf-8": b'{"judge_passed": true, "x": "\xff\xfe"}',
}


@pytest.mark.parametrize("name", list(UNUSABLE))
def test_an_unusable_file_raises_unusable_result(exp: Path, name: str) -> None:
    path = write_bytes(exp / "T0" / "00" / "run_01" / "run_result.json", UNUSABLE[name])
    with pytest.raises(UnusableResult) as info:
        read_result_file(path, exp)
    assert str(info.value)


def test_unusable_files_are_listed_with_a_reason_and_left_out(exp: Path) -> None:
    expected: dict[Path, str] = {}
    for run, (name, data) in enumerate(UNUSABLE.items(), start=1):
        path = write_bytes(exp / "T0" / "00" / f"run_{run:02d}" / "run_result.json", data)
        expected[path] = name
    directory = exp / "T0" / "01" / "run_01" / "run_result.json"
    directory.mkdir(parents=True)
    (directory / "run_result.json").write_text(json.dumps(own("passed")))
    good = result(exp, "T1", "00", "run_01", own("passed"))

    report = scan_result_files(exp)

    assert statuses(report) == {RunKey("T1", "00", 1): "passed"}
    assert sorted(problem_paths(report)) == sorted([*expected, directory])
    reasons = dict(report.problems)
    assert all(reason.strip() for reason in reasons.values())
    assert "cannot be read" in reasons[directory]
    by_name = {name: reasons[path] for path, name in expected.items()}
    assert "JSON" in by_name["truncated"]
    assert "list" in by_name["a list"]
    assert "no status" in by_name["no status"]
    assert good not in reasons


# -- symlinks --


def test_a_result_file_symlinked_outside_is_listed_and_not_read(tmp_path: Path, exp: Path) -> None:
    outside = write_json(tmp_path / "elsewhere" / "run_result.json", own("passed"))
    absolute = exp / "T0" / "00" / "run_01" / "run_result.json"
    absolute.parent.mkdir(parents=True)
    absolute.symlink_to(outside)
    relative = exp / "T0" / "00" / "run_02" / "run_result.json"
    relative.parent.mkdir(parents=True)
    relative.symlink_to(Path("../../../../elsewhere/run_result.json"))
    assert relative.read_text() == outside.read_text()  # reading it would count it
    asked: list[Path] = []

    def hook(data: dict[str, Any], where: Path) -> str | None:
        asked.append(where)
        return "passed"

    with pytest.raises(UnusableResult, match="symlink"):
        read_result_file(absolute, exp)
    report = scan_result_files(exp, hook)
    assert report.found == {}
    assert sorted(problem_paths(report)) == [absolute, relative]
    assert all("symlink" in reason for _, reason in report.problems)
    assert asked == []


def test_a_result_file_symlinked_inside_is_used(exp: Path) -> None:
    result(exp, "T0", "00", "run_01", own("failed"))
    shared = write_json(exp / "shared" / "kept.json", own("skipped"))
    sibling = exp / "T0" / "00" / "run_02" / "run_result.json"
    sibling.parent.mkdir(parents=True)
    sibling.symlink_to(Path("../run_01/run_result.json"))
    absolute = exp / "T0" / "00" / "run_03" / "run_result.json"
    absolute.parent.mkdir(parents=True)
    absolute.symlink_to(shared)

    report = scan_result_files(exp)

    assert report.problems == []
    assert statuses(report) == {
        RunKey("T0", "00", 1): "failed",
        RunKey("T0", "00", 2): "failed",
        RunKey("T0", "00", 3): "skipped",
    }


def test_a_dangling_result_symlink_is_listed(exp: Path) -> None:
    link = exp / "T0" / "00" / "run_01" / "run_result.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(exp / "T0" / "00" / "run_01" / "gone.json")
    report = scan_result_files(exp)
    assert report.found == {}
    assert problem_paths(report) == [link]


def test_symlinked_dirs_are_listed_and_not_followed(tmp_path: Path, exp: Path) -> None:
    # Targets that would count if followed: one outside, one inside the experiment dir.
    write_json(tmp_path / "outside" / "run_result.json", own("passed"))
    write_json(tmp_path / "outside_tier" / "00" / "run_01" / "run_result.json", own("passed"))
    write_json(tmp_path / "outside_subtest" / "run_01" / "run_result.json", own("passed"))
    result(exp, "T0", "00", "run_01", own("failed"))
    (exp / "T0" / "00" / "run_02").symlink_to(tmp_path / "outside")
    (exp / "T0" / "00" / "run_03").symlink_to(exp / "T0" / "00" / "run_01")
    (exp / "T0" / "01").symlink_to(tmp_path / "outside_subtest")
    (exp / "T9").symlink_to(tmp_path / "outside_tier")
    # A symlink to a file, and a dangling one, are not directories to list.
    (exp / "T0" / "00" / "run_04").symlink_to(tmp_path / "outside" / "run_result.json")
    (exp / "T0" / "00" / "run_05").symlink_to(tmp_path / "missing")

    report = scan_result_files(exp)

    assert statuses(report) == {RunKey("T0", "00", 1): "failed"}
    assert sorted(problem_paths(report)) == sorted(
        [
            exp / "T0" / "00" / "run_02",
            exp / "T0" / "00" / "run_03",
            exp / "T0" / "01",
            exp / "T9",
        ]
    )
    assert all("symlink" in reason for _, reason in report.problems)


# -- reconciliation: result files the checkpoint does not list --

GRID = [RunKey("T0", "00", run) for run in range(1, 10)]


def test_unrecorded_results_only_for_runs_that_would_run(exp: Path) -> None:
    completed = {
        RunKey("T0", "00", 1): "passed",  # done; its file differs: ignored
        RunKey("T0", "00", 3): "error",  # reruns; same status in the file
        RunKey("T0", "00", 4): "error",  # reruns; the file says passed
        RunKey("T0", "00", 7): "skipped",  # done; its file differs: ignored
        RunKey("T0", "00", 8): "failed",  # done, the file is corrupt: ignored
    }
    result(exp, "T0", "00", "run_01", own("failed"))
    result(exp, "T0", "00", "run_02", own("passed"))  # no status: reported
    result(exp, "T0", "00", "run_03", own("error"))
    result(exp, "T0", "00", "run_04", own("passed"))
    # run 5: no status, no file
    write_bytes(exp / "T0" / "00" / "run_06" / "run_result.json", b"{trunc")  # unusable
    result(exp, "T0", "00", "run_07", own("passed"))
    write_bytes(exp / "T0" / "00" / "run_08" / "run_result.json", b"[]")
    result(exp, "T0", "00", "run_09", {"judge_passed": False})  # no status: reported
    result(exp, "T0", "00", "run_10", own("passed"))  # not in the keys asked about
    result(exp, "T1", "00", "run_01", own("passed"))  # not in the keys asked about

    found = unrecorded_results(exp, GRID, completed, frozenset({"error"}))

    assert found == {
        RunKey("T0", "00", 2): "passed",
        RunKey("T0", "00", 4): "passed",
        RunKey("T0", "00", 9): "failed",
    }


def test_unrecorded_results_follow_the_rerun_set(exp: Path) -> None:
    completed = {
        RunKey("T0", "00", 1): "failed",
        RunKey("T0", "00", 2): "error",
        RunKey("T0", "00", 3): "skipped",
    }
    result(exp, "T0", "00", "run_01", own("passed"))
    result(exp, "T0", "00", "run_02", own("passed"))
    result(exp, "T0", "00", "run_03", own("passed"))
    keys = GRID[:3]
    assert unrecorded_results(exp, keys, completed, frozenset({"failed", "skipped"})) == {
        RunKey("T0", "00", 1): "passed",
        RunKey("T0", "00", 3): "passed",
    }
    assert unrecorded_results(exp, keys, completed, frozenset()) == {}
    assert unrecorded_results(exp, keys, {}, frozenset()) == dict.fromkeys(keys, "passed")


def test_unrecorded_results_ask_the_hook(exp: Path) -> None:
    result(exp, "T0", "00", "run_01", {"verdict": "good"})
    result(exp, "T0", "00", "run_02", {"verdict": "bad"})
    result(exp, "T0", "00", "run_03", {"verdict": "?"})

    def hook(data: dict[str, Any], where: Path) -> str | None:
        return {"good": "passed", "bad": "failed", "?": "maybe"}[data["verdict"]]

    assert unrecorded_results(exp, GRID[:3], {}, frozenset({"error"}), hook) == {
        RunKey("T0", "00", 1): "passed",
        RunKey("T0", "00", 2): "failed",
    }
    assert unrecorded_results(exp, GRID[:3], {}, frozenset({"error"})) == {}


def test_unrecorded_results_ignore_a_result_symlinked_outside(tmp_path: Path, exp: Path) -> None:
    outside = write_json(tmp_path / "elsewhere" / "run_result.json", own("passed"))
    link = exp / "T0" / "00" / "run_01" / "run_result.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    assert unrecorded_results(exp, GRID[:1], {}, frozenset({"error"})) == {}


def test_unrecorded_results_do_not_follow_a_symlinked_run_dir(tmp_path: Path, exp: Path) -> None:
    write_json(tmp_path / "elsewhere" / "run_result.json", own("passed"))
    (exp / "T0" / "00").mkdir(parents=True)
    (exp / "T0" / "00" / "run_01").symlink_to(tmp_path / "elsewhere")
    assert scan_result_files(exp).found == {}
    assert unrecorded_results(exp, GRID[:1], {}, frozenset({"error"})) == {}


def test_unrecorded_results_read_nothing_for_done_runs(
    exp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for run in range(1, 4):
        result(exp, "T0", "00", f"run_{run:02d}", own("failed"))
    looked_at: list[str] = []
    real_lexists = os.path.lexists

    def lexists(path: Any) -> bool:
        looked_at.append(str(path))
        return real_lexists(path)

    monkeypatch.setattr("pytest_expresume.scanner.os.path.lexists", lexists)
    completed = dict.fromkeys(GRID[:3], "passed")
    assert unrecorded_results(exp, GRID[:3], completed, frozenset({"error"})) == {}
    assert looked_at == []


# -- the check after a session died --


def test_unwhole_results_names_missing_empty_and_garbled_files(exp: Path) -> None:
    whole, empty, garbled, missing = (RunKey("T0", "00", n) for n in (1, 2, 3, 4))
    write_result(exp, whole, own("passed"))
    write_bytes(exp / "T0/00/run_02/run_result.json", b"")
    write_bytes(exp / "T0/00/run_03/run_result.json", b'{"expresume": {"sta')
    assert unwhole_results(exp, [whole, empty, garbled, missing]) == {empty, garbled, missing}


def test_a_result_reached_through_a_symlinked_dir_pointing_out_is_not_whole(
    tmp_path: Path, exp: Path
) -> None:
    outside = tmp_path / "elsewhere"
    write_result(outside, RunKey("T0", "00", 1), own("passed"))
    write_result(outside, RunKey("T0", "01", 1), own("passed"))
    (exp / "T0").mkdir()
    (exp / "T0" / "00").symlink_to(outside / "T0" / "00")  # a symlinked subtest dir
    (exp / "T0" / "01").mkdir()
    (exp / "T0" / "01" / "run_01").symlink_to(outside / "T0" / "01" / "run_01")  # a run dir
    keys = [RunKey("T0", "00", 1), RunKey("T0", "01", 1)]
    assert unwhole_results(exp, keys) == set(keys)
    assert unrecorded_results(exp, keys, {}, frozenset({"error"})) == {}


def test_the_check_follows_dirs_symlinked_inside_and_never_out(tmp_path: Path, exp: Path) -> None:
    """The reader lists each tier and subtest dir once instead of an lstat per run: a
    symlinked tier or subtest dir counts when it resolves inside the experiment dir, never
    when it leads out; a symlinked run dir never counts."""
    outside = tmp_path / "elsewhere"
    inside_tier, out_tier = RunKey("T1", "00", 1), RunKey("T2", "00", 1)
    inside_subtest, plain, linked_run = (RunKey("T0", s, 1) for s in ("01", "02", "03"))
    write_result(exp / "store", inside_tier, own("passed"))
    (exp / "T1").symlink_to(exp / "store" / "T1")
    write_result(outside, out_tier, own("passed"))
    (exp / "T2").symlink_to(outside / "T2")
    write_result(exp, RunKey("T0", "91", 1), own("passed"))
    (exp / "T0" / "01").symlink_to(exp / "T0" / "91")
    write_result(exp, plain, own("passed"))
    (exp / "T0" / "03").mkdir()
    (exp / "T0" / "03" / "run_01").symlink_to(exp / "T0" / "02" / "run_01")
    keys = [inside_tier, out_tier, inside_subtest, plain, linked_run]
    assert unwhole_results(exp, keys) == {out_tier, linked_run}
