"""The grid: order, ids, directories, attempts, and a run's status from its phases."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from pytest_expresume import atomic_write, layout
from pytest_expresume.config import ConfigError, validate
from pytest_expresume.grid import Grid, RunKey, build_grid
from pytest_expresume.layout import (
    ATTEMPTS_DIR,
    RESULT_FILE_NAME,
    prepare_run_dir,
    result_path,
    run_dir,
    run_dir_name,
)
from pytest_expresume.outcome import final_status, phase_status, short_message


def spec_of(**experiment: Any) -> Any:
    return validate({"experiment_id": "demo", **experiment})


def no_hook(tier: str) -> Sequence[str] | None:
    raise AssertionError(f"the subtests hook was asked about {tier}")


def test_build_grid_order_is_config_order() -> None:
    grid = build_grid(
        spec_of(tiers=["T2", "T0", "T1"], subtests=["01", "00"], runs_per_subtest=2), no_hook
    )
    assert list(grid) == [
        RunKey("T2", "01", 1),
        RunKey("T2", "01", 2),
        RunKey("T2", "00", 1),
        RunKey("T2", "00", 2),
        RunKey("T0", "01", 1),
        RunKey("T0", "01", 2),
        RunKey("T0", "00", 1),
        RunKey("T0", "00", 2),
        RunKey("T1", "01", 1),
        RunKey("T1", "01", 2),
        RunKey("T1", "00", 1),
        RunKey("T1", "00", 2),
    ]
    assert len(grid) == 12


def test_runs_go_from_1_to_n() -> None:
    grid = build_grid(spec_of(tiers=["T0"], subtests=["00"], runs_per_subtest=12), no_hook)
    assert [key.run for key in grid] == list(range(1, 13))
    assert all(type(key.run) is int for key in grid)


def test_default_is_one_run() -> None:
    grid = build_grid(spec_of(tiers=["T0"], subtests=["00", "01"]), no_hook)
    assert list(grid) == [RunKey("T0", "00", 1), RunKey("T0", "01", 1)]


def test_subtests_mapping_per_tier() -> None:
    grid = build_grid(
        spec_of(tiers=["T0", "T1"], subtests={"T0": ["00"], "T1": ["05", "03"]}), no_hook
    )
    assert dict(grid.subtests) == {"T0": ("00",), "T1": ("05", "03")}


def test_test_ids() -> None:
    grid = build_grid(
        spec_of(tiers=["T0", "T6"], subtests=["00-empty"], runs_per_subtest=10), no_hook
    )
    ids = [key.test_id for key in grid]
    assert ids[0] == "T0-00-empty-run_01"
    assert ids[9] == "T0-00-empty-run_10"
    assert ids[10] == "T6-00-empty-run_01"
    assert RunKey("T0", "00", 1).test_id == "T0-00-run_01"
    assert RunKey("T3", "12", 100).test_id == "T3-12-run_100"
    assert list(grid.by_test_id()) == ids
    assert grid.by_test_id()["T6-00-empty-run_03"] == RunKey("T6", "00-empty", 3)


@pytest.mark.parametrize(
    ("run", "name"),
    [
        (1, "run_01"),
        (9, "run_09"),
        (10, "run_10"),
        (99, "run_99"),
        (100, "run_100"),
        (1234, "run_1234"),
    ],
)
def test_run_dir_name(run: int, name: str) -> None:
    assert run_dir_name(run) == name


def test_run_dir_and_result_path(tmp_path: Path) -> None:
    key = RunKey("T0", "00", 7)
    assert run_dir(tmp_path, key) == tmp_path / "T0" / "00" / "run_07"
    assert result_path(tmp_path, key) == tmp_path / "T0" / "00" / "run_07" / RESULT_FILE_NAME
    assert RESULT_FILE_NAME == "run_result.json"


def test_subtests_from_the_hook_when_the_config_has_none() -> None:
    asked: list[str] = []

    def hook(tier: str) -> Sequence[str] | None:
        asked.append(tier)
        return {"T0": ["00", "01", "02"], "T1": ["10"]}[tier]

    grid = build_grid(spec_of(tiers=["T0", "T1"], runs_per_subtest=2), hook)
    assert asked == ["T0", "T1"]
    assert dict(grid.subtests) == {"T0": ("00", "01", "02"), "T1": ("10",)}
    assert len(grid) == 8


def test_hook_fills_tiers_the_mapping_leaves_out() -> None:
    asked: list[str] = []

    def hook(tier: str) -> Sequence[str] | None:
        asked.append(tier)
        return ("a", "b")

    grid = build_grid(spec_of(tiers=["T0", "T1"], subtests={"T1": ["x"]}), hook)
    assert asked == ["T0"]
    assert dict(grid.subtests) == {"T0": ("a", "b"), "T1": ("x",)}


def test_hook_answering_none_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        build_grid(spec_of(tiers=["T0", "T5"]), lambda tier: None if tier == "T5" else ["00"])
    assert "T5" in str(info.value)
    assert "pytest_expresume_subtests" in str(info.value)


def test_hook_answering_nothing_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        build_grid(spec_of(tiers=["T0"]), lambda tier: [])
    assert "T0" in str(info.value)


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".", ".."])
def test_hook_names_are_checked(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_grid(spec_of(tiers=["T0"]), lambda tier: ["00", bad])
    assert f'"{bad}"' in str(info.value)


def test_hook_duplicates_are_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        build_grid(spec_of(tiers=["T0"]), lambda tier: ["00", "01", "00"])
    assert "00" in str(info.value)
    assert "T0" in str(info.value)


def test_max_subtests_keeps_the_first_n() -> None:
    grid = build_grid(
        spec_of(tiers=["T0", "T1"], subtests=["03", "01", "02"], max_subtests=2), no_hook
    )
    assert dict(grid.subtests) == {"T0": ("03", "01"), "T1": ("03", "01")}
    grid = build_grid(spec_of(tiers=["T0"], max_subtests=1), lambda tier: ["b", "a"])
    assert dict(grid.subtests) == {"T0": ("b",)}
    grid = build_grid(spec_of(tiers=["T0"], subtests=["00"], max_subtests=5), no_hook)
    assert dict(grid.subtests) == {"T0": ("00",)}


def test_test_id_clash_is_a_config_error() -> None:
    # ("a-b", "c") and ("a", "b-c") would both be a-b-c-run_01.
    with pytest.raises(ConfigError) as info:
        build_grid(spec_of(tiers=["a-b", "a"], subtests=["c", "b-c"]), no_hook)
    message = str(info.value)
    assert "a-b-c-run_01" in message
    assert "('a-b', 'c', 1)" in message
    assert "('a', 'b-c', 1)" in message


def test_test_id_clash_with_a_mapping() -> None:
    with pytest.raises(ConfigError):
        build_grid(spec_of(tiers=["a-b", "a"], subtests={"a-b": ["c"], "a": ["b-c"]}), no_hook)


def test_no_clash_without_a_shared_id() -> None:
    grid = build_grid(spec_of(tiers=["a-b", "a"], subtests={"a-b": ["c"], "a": ["c-b"]}), no_hook)
    assert len(grid.by_test_id()) == 2


def test_grid_contains() -> None:
    grid = Grid({"T0": ("00", "01")}, 3)
    assert RunKey("T0", "01", 3) in grid
    assert RunKey("T0", "01", 4) not in grid
    assert RunKey("T0", "01", 0) not in grid
    assert RunKey("T0", "02", 1) not in grid
    assert RunKey("T1", "00", 1) not in grid
    assert ("T0", "00", 1) not in grid


def test_grid_json_round_trip() -> None:
    grid = build_grid(
        spec_of(tiers=["T1", "T0"], subtests={"T1": ["b", "a"], "T0": ["z"]}, runs_per_subtest=3),
        no_hook,
    )
    data = grid.to_json()
    assert data == {"subtests": {"T1": ["b", "a"], "T0": ["z"]}, "runs": 3}
    # It crosses a process boundary as JSON.
    back = Grid.from_json(orjson.loads(orjson.dumps(data)))
    assert back == grid
    assert list(back) == list(grid)
    assert list(back.subtests) == ["T1", "T0"]


# -- attempts ---------------------------------------------------------------------------------


def test_prepare_run_dir_creates_a_new_dir(tmp_path: Path) -> None:
    key = RunKey("T0", "00", 1)
    made = prepare_run_dir(tmp_path, key)
    assert made == tmp_path / "T0" / "00" / "run_01"
    assert made.is_dir()
    assert list(made.iterdir()) == []
    assert not (tmp_path / "T0" / "00" / ATTEMPTS_DIR).exists()


@pytest.mark.parametrize("fsync", [True, False])
def test_prepare_run_dir_makes_every_new_entry_durable_with_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    """A flushed result file is lost with a dir entry a power cut forgot: with fsync, each
    new dir on the run's path is flushed in its parent (tier and subtest dirs once)."""
    flushed: list[Path] = []
    monkeypatch.setattr(atomic_write, "fsync_dir", flushed.append)
    monkeypatch.setattr(layout, "fsync_dir", flushed.append)
    prepare_run_dir(tmp_path, RunKey("T0", "00", 1), fsync=fsync)
    first = list(flushed)
    flushed.clear()
    prepare_run_dir(tmp_path, RunKey("T0", "00", 2), fsync=fsync)
    second = list(flushed)
    flushed.clear()
    prepare_run_dir(tmp_path, RunKey("T0", "00", 2), fsync=fsync)  # a second attempt
    if not fsync:
        assert first == second == flushed == []
        return
    assert first == [tmp_path, tmp_path / "T0", tmp_path / "T0" / "00"]
    assert second == [tmp_path / "T0" / "00"]
    assert flushed == [tmp_path / "T0" / "00"]


def test_prepare_run_dir_keeps_every_earlier_attempt(tmp_path: Path) -> None:
    key = RunKey("T0", "00", 3)
    for attempt in range(1, 4):
        made = prepare_run_dir(tmp_path, key)
        assert list(made.iterdir()) == []
        (made / "log.txt").write_text(f"attempt {attempt}")
        (made / "workspace").mkdir()
        (made / "workspace" / "file").write_text(str(attempt))
    prepare_run_dir(tmp_path, key)

    attempts = tmp_path / "T0" / "00" / ".attempts"
    assert sorted(p.name for p in attempts.iterdir()) == ["run_03-1", "run_03-2", "run_03-3"]
    for k in (1, 2, 3):
        assert (attempts / f"run_03-{k}" / "log.txt").read_text() == f"attempt {k}"
        assert (attempts / f"run_03-{k}" / "workspace" / "file").read_text() == str(k)
    assert list((tmp_path / "T0" / "00" / "run_03").iterdir()) == []


def test_attempt_numbers_are_per_run(tmp_path: Path) -> None:
    for key in (RunKey("T0", "00", 1), RunKey("T0", "00", 10), RunKey("T0", "00", 1)):
        prepare_run_dir(tmp_path, key)
    prepare_run_dir(tmp_path, RunKey("T0", "00", 10))
    attempts = tmp_path / "T0" / "00" / ".attempts"
    assert sorted(p.name for p in attempts.iterdir()) == ["run_01-1", "run_10-1"]


def test_attempt_numbers_continue_after_the_highest(tmp_path: Path) -> None:
    key = RunKey("T1", "02", 1)
    attempts = tmp_path / "T1" / "02" / ".attempts"
    (attempts / "run_01-1").mkdir(parents=True)
    (attempts / "run_01-4").mkdir()
    (attempts / "run_01-notes").mkdir()
    (tmp_path / "T1" / "02" / "run_01").mkdir()
    (tmp_path / "T1" / "02" / "run_01" / "marker").write_text("x")
    prepare_run_dir(tmp_path, key)
    assert (attempts / "run_01-5" / "marker").read_text() == "x"
    assert sorted(p.name for p in attempts.iterdir()) == [
        "run_01-1",
        "run_01-4",
        "run_01-5",
        "run_01-notes",
    ]


# -- status of a run (SPEC "Status of a run") -------------------------------------------------


@pytest.mark.parametrize(
    ("when", "outcome", "verdict", "wasxfail", "strict_xpass", "expected"),
    [
        ("setup", "passed", False, False, False, None),
        ("setup", "failed", False, False, False, "error"),
        ("setup", "skipped", False, False, False, "skipped"),
        ("call", "passed", False, False, False, "passed"),
        # xpass (not strict): reported as passed with wasxfail.
        ("call", "passed", False, True, False, "passed"),
        # strict xpass: reported as failed, but an xpass counts as passed.
        ("call", "failed", False, False, True, "passed"),
        ("call", "failed", True, False, False, "failed"),
        ("call", "failed", False, False, False, "error"),
        # xfail: reported as skipped with wasxfail; an xfail counts as failed.
        ("call", "skipped", False, True, False, "failed"),
        ("call", "skipped", False, False, False, "skipped"),
        ("teardown", "passed", False, False, False, None),
        ("teardown", "failed", False, False, False, "error"),
        ("teardown", "failed", True, False, False, "error"),
    ],
)
def test_phase_status(
    when: str, outcome: str, verdict: bool, wasxfail: bool, strict_xpass: bool, expected: Any
) -> None:
    assert (
        phase_status(
            when, outcome, verdict_exception=verdict, wasxfail=wasxfail, strict_xpass=strict_xpass
        )
        == expected
    )


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ([], "error"),
        (["passed"], "passed"),
        (["failed"], "failed"),
        (["error"], "error"),
        (["skipped"], "skipped"),
        (["passed", "error"], "error"),
        (["failed", "error"], "error"),
        (["skipped", "error"], "error"),
        (["error", "error"], "error"),
    ],
)
def test_final_status(phases: list[Any], expected: str) -> None:
    assert final_status(phases) == expected


@pytest.mark.parametrize(
    ("setup", "call", "teardown", "expected"),
    [
        # (outcome, verdict_exception, wasxfail, strict_xpass) per phase; None: phase not run
        (("passed",), ("passed",), ("passed",), "passed"),
        (("passed",), ("failed", True), ("passed",), "failed"),
        (("passed",), ("failed", False), ("passed",), "error"),
        (("passed",), ("passed",), ("failed",), "error"),
        (("passed",), ("failed", True), ("failed",), "error"),
        (("failed",), None, ("passed",), "error"),
        (("skipped",), None, ("passed",), "skipped"),
        (("passed",), ("skipped",), ("passed",), "skipped"),
        (("passed",), ("skipped", False, True), ("passed",), "failed"),
        (("passed",), ("failed", False, False, True), ("passed",), "passed"),
    ],
)
def test_status_of_a_whole_run(
    setup: tuple[Any, ...], call: tuple[Any, ...] | None, teardown: tuple[Any, ...], expected: str
) -> None:
    phases = []
    for when, spec in (("setup", setup), ("call", call), ("teardown", teardown)):
        if spec is None:
            continue
        outcome, verdict, wasxfail, strict = (*spec, False, False, False)[:4]
        status = phase_status(
            when, outcome, verdict_exception=verdict, wasxfail=wasxfail, strict_xpass=strict
        )
        if status is not None:
            phases.append(status)
    assert final_status(phases) == expected


def test_short_message() -> None:
    assert short_message("AssertionError: judges said no\nmore detail") == (
        "AssertionError: judges said no"
    )
    assert short_message("   ") == ""
    long = short_message("x" * 2000)
    assert len(long) == 500
    assert long.endswith("...")


def test_a_dir_another_process_just_made_is_flushed_all_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two xdist workers make the same new subtest dir: the one that loses the race must not
    trust the other to have flushed its entry yet."""
    flushed: list[Path] = []
    monkeypatch.setattr(atomic_write, "fsync_dir", flushed.append)
    (tmp_path / "T0").mkdir()
    real_mkdir = Path.mkdir

    def raced(self: Path, *args: object, **kwargs: object) -> None:
        if self == tmp_path / "T0" / "00":
            real_mkdir(self)  # the other worker won
            raise FileExistsError(str(self))
        real_mkdir(self)

    monkeypatch.setattr(Path, "mkdir", raced)
    atomic_write.make_dirs(tmp_path / "T0" / "00" / "run_01", fsync=True)
    assert flushed == [tmp_path / "T0", tmp_path / "T0" / "00"]
