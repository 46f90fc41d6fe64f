"""plan_session: new experiment, resume, refusals, saved config in charge."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pytest_expresume.config import ConfigError, config_hash
from pytest_expresume.grid import RunKey
from pytest_expresume.layout import (
    experiment_dir_name,
    load_saved_config,
    save_config,
)
from pytest_expresume.planning import PlanRequest, plan_session
from pytest_expresume.store import CHECKPOINT_NAME, Checkpoint, CheckpointStore

NOW = datetime(2026, 1, 20, 6, 50, 26, tzinfo=timezone.utc)
JUDGES = ["claude-opus-4-5-20251101", "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"]


def experiment(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "experiment_id": "test-001",
        "tiers": ["T0", "T1"],
        "subtests": ["00", "01"],
        "runs_per_subtest": 2,
        "judges": list(JUDGES),
        "thinking_mode": "none",
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not ...}


def make_experiment_dir(
    root: Path,
    config: dict[str, Any],
    *,
    started: datetime = NOW - timedelta(days=1),
    runs: dict[RunKey, str] | None = None,
    with_config: bool = True,
) -> Path:
    directory = root / experiment_dir_name(started, config["experiment_id"])
    directory.mkdir(parents=True)
    if with_config:
        save_config(directory, config)
    with CheckpointStore(directory, fsync=False) as store:
        store.create(
            Checkpoint(
                experiment_id=config["experiment_id"],
                experiment_dir=str(directory),
                config_hash=config_hash(config),
                completed_runs=dict(runs or {}),
            )
        )
    return directory


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def refusal(request: PlanRequest) -> str:
    with pytest.raises(ConfigError) as info:
        plan_session(request, NOW)
    return str(info.value)


def test_new_experiment_when_none_exists(tmp_path: Path) -> None:
    root = tmp_path / "results"
    given = experiment()
    plan = plan_session(PlanRequest(given=given, results_root=root), NOW)
    assert plan.mode == "new"
    assert plan.experiment_dir == root / "2026-01-20T06-50-26-test-001"
    assert plan.experiment == given
    assert plan.experiment is not given
    assert plan.config_hash == config_hash(given)
    assert plan.save_config is True
    assert plan.checkpoint is None
    assert plan.spec.tiers == ("T0", "T1")
    assert plan.ignored == []
    # Planning writes nothing.
    assert not root.exists()


def test_other_experiment_ids_are_not_resumed(tmp_path: Path) -> None:
    make_experiment_dir(tmp_path, experiment(experiment_id="other"))
    make_experiment_dir(tmp_path, experiment(experiment_id="test-001x"))
    plan = plan_session(PlanRequest(given=experiment(), results_root=tmp_path), NOW)
    assert plan.mode == "new"
    assert plan.experiment_dir.name == "2026-01-20T06-50-26-test-001"


def test_new_experiment_dir_name_is_unique(tmp_path: Path) -> None:
    existing = tmp_path / "2026-01-20T06-50-26-test-001"
    existing.mkdir()  # not an experiment dir, but the name is taken
    plan = plan_session(PlanRequest(given=experiment(), results_root=tmp_path), NOW)
    assert plan.mode == "new"
    assert plan.experiment_dir == tmp_path / "2026-01-20T06-50-27-test-001"


def test_resume_when_the_hash_is_the_same(tmp_path: Path) -> None:
    runs = {RunKey("T0", "00", 1): "passed", RunKey("T0", "00", 2): "error"}
    directory = make_experiment_dir(tmp_path, experiment(), runs=runs)
    # The same config, keys in another order.
    given = dict(reversed(list(experiment().items())))
    plan = plan_session(PlanRequest(given=given, results_root=tmp_path), NOW)
    assert plan.mode == "resume"
    assert plan.experiment_dir == directory
    assert plan.experiment == experiment()
    assert plan.config_hash == config_hash(experiment())
    assert plan.checkpoint is not None
    assert plan.checkpoint.completed_runs == runs
    assert plan.ignored == []
    assert plan.replaced == []
    assert plan.save_config is False


def test_resume_picks_the_newest_dir(tmp_path: Path) -> None:
    make_experiment_dir(tmp_path, experiment(), started=NOW - timedelta(days=3))
    newest = make_experiment_dir(tmp_path, experiment(), started=NOW - timedelta(hours=1))
    make_experiment_dir(tmp_path, experiment(), started=NOW - timedelta(days=2))
    plan = plan_session(PlanRequest(given=experiment(), results_root=tmp_path), NOW)
    assert plan.experiment_dir == newest


def test_changed_config_is_refused_with_each_changed_key(tmp_path: Path) -> None:
    directory = make_experiment_dir(tmp_path, experiment())
    before = snapshot(tmp_path)
    given = experiment(judges=JUDGES[:2], thinking_mode=..., runs_per_subtest=3)
    message = refusal(PlanRequest(given=given, results_root=tmp_path))
    assert str(directory) in message
    assert "judges: [3 items] -> [2 items]" in message
    assert 'thinking_mode: "none" -> (absent)' in message
    assert "runs_per_subtest" not in message  # the grid grows: no drift (SPEC: growth)
    assert "--resume" in message
    assert "--fresh" in message
    assert "experiment_id" not in message
    assert "tiers" not in message
    assert snapshot(tmp_path) == before


def test_resume_keeps_the_saved_config_and_names_ignored_keys(tmp_path: Path) -> None:
    saved = experiment()
    directory = make_experiment_dir(tmp_path, saved)
    given = experiment(judges=JUDGES[:2], new_key=1)
    plan = plan_session(PlanRequest(given=given, results_root=tmp_path, resume=True), NOW)
    assert plan.mode == "resume"
    assert plan.experiment_dir == directory
    assert plan.experiment == saved
    assert plan.experiment["judges"] == JUDGES
    assert "new_key" not in plan.experiment
    assert plan.config_hash == config_hash(saved)
    assert len(plan.ignored) == 2
    judges_line = next(line for line in plan.ignored if line.startswith("judges"))
    assert "[2 items]" in judges_line
    assert "[3 items]" in judges_line
    assert any(line.startswith("new_key") for line in plan.ignored)
    assert plan.replaced == []


def test_resume_with_a_partial_config_ignores_nothing(tmp_path: Path) -> None:
    saved = experiment()
    make_experiment_dir(tmp_path, saved)
    given = {"experiment_id": "test-001", "tiers": ["T0", "T1"]}
    plan = plan_session(PlanRequest(given=given, results_root=tmp_path, resume=True), NOW)
    assert plan.experiment == saved
    assert plan.ignored == []


def test_runtime_keys_given_now_replace_the_saved_ones(tmp_path: Path) -> None:
    saved = experiment(runtime_keys=["timeout", "workers"], timeout=60, workers=4)
    directory = make_experiment_dir(tmp_path, saved)
    given = experiment(runtime_keys=["timeout", "workers"], timeout=3600, workers=4)
    plan = plan_session(PlanRequest(given=given, results_root=tmp_path), NOW)
    assert plan.mode == "resume"
    assert plan.experiment_dir == directory
    assert plan.experiment["timeout"] == 3600
    assert plan.experiment["workers"] == 4
    assert plan.config_hash == config_hash(saved)
    assert plan.replaced == ["timeout: 60 -> 3600"]
    assert plan.ignored == []


def test_runtime_keys_replace_with_resume_too(tmp_path: Path) -> None:
    saved = experiment(runtime_keys=["timeout"], timeout=60)
    make_experiment_dir(tmp_path, saved)
    given = experiment(runtime_keys=["timeout"], timeout=5, judges=["x"])
    plan = plan_session(PlanRequest(given=given, results_root=tmp_path, resume=True), NOW)
    assert plan.experiment["timeout"] == 5
    assert plan.experiment["judges"] == JUDGES
    assert plan.replaced == ["timeout: 60 -> 5"]
    assert [line.split(":")[0] for line in plan.ignored] == ["judges"]


def test_fresh_and_resume_contradict(tmp_path: Path) -> None:
    message = refusal(
        PlanRequest(given=experiment(), results_root=tmp_path, fresh=True, resume=True)
    )
    assert "--fresh" in message
    assert "--resume" in message


def test_fresh_starts_a_new_dir_and_leaves_old_ones(tmp_path: Path) -> None:
    old = make_experiment_dir(tmp_path, experiment())
    before = snapshot(tmp_path)
    plan = plan_session(
        PlanRequest(given=experiment(judges=["x"]), results_root=tmp_path, fresh=True), NOW
    )
    assert plan.mode == "new"
    assert plan.experiment_dir != old
    assert plan.experiment_dir.parent == tmp_path
    assert plan.experiment["judges"] == ["x"]
    assert snapshot(tmp_path) == before


def test_fresh_with_experiment_dir_is_an_error(tmp_path: Path) -> None:
    directory = make_experiment_dir(tmp_path, experiment())
    message = refusal(
        PlanRequest(given=experiment(), results_root=tmp_path, fresh=True, experiment_dir=directory)
    )
    assert "--fresh" in message
    assert "--experiment-dir" in message


@pytest.mark.parametrize("kind", ["empty", "missing", "file"])
def test_experiment_dir_that_is_not_an_experiment(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "somewhere"
    if kind == "empty":
        target.mkdir()
    elif kind == "file":
        target.write_text("x")
    message = refusal(PlanRequest(given=None, results_root=tmp_path, experiment_dir=target))
    assert str(target) in message
    assert "not an experiment dir" in message


def test_experiment_dir_alone_resumes_with_the_saved_config(tmp_path: Path) -> None:
    saved = experiment(extra={"nested": [1, 2.5, None]})
    directory = make_experiment_dir(
        tmp_path / "elsewhere", saved, runs={RunKey("T1", "01", 2): "failed"}
    )
    plan = plan_session(
        PlanRequest(given=None, results_root=tmp_path / "results", experiment_dir=directory), NOW
    )
    assert plan.mode == "resume"
    assert plan.experiment_dir == directory
    assert plan.experiment == saved
    assert plan.checkpoint is not None
    assert plan.checkpoint.completed_runs == {RunKey("T1", "01", 2): "failed"}


def test_resume_with_nothing_to_resume(tmp_path: Path) -> None:
    make_experiment_dir(tmp_path, experiment(experiment_id="other"))
    message = refusal(PlanRequest(given=experiment(), results_root=tmp_path, resume=True))
    assert "nothing to resume" in message
    assert "test-001" in message


def test_no_config_and_no_dir_is_an_error(tmp_path: Path) -> None:
    message = refusal(PlanRequest(given=None, results_root=tmp_path, resume=True))
    assert "nothing to resume" in message
    assert "--experiment-dir" in message


def test_invalid_given_config_is_refused(tmp_path: Path) -> None:
    message = refusal(PlanRequest(given=experiment(tiers=["../x"]), results_root=tmp_path))
    assert '"../x"' in message


def test_saved_config_without_checkpoint(tmp_path: Path) -> None:
    directory = tmp_path / experiment_dir_name(NOW, "test-001")
    save_config(directory, experiment())
    plan = plan_session(
        PlanRequest(given=None, results_root=tmp_path, experiment_dir=directory), NOW
    )
    assert plan.mode == "resume"
    assert plan.checkpoint is not None
    assert plan.checkpoint.completed_runs == {}
    assert plan.checkpoint.config_hash == config_hash(experiment())
    assert not (directory / CHECKPOINT_NAME).exists()


def older_layout_dir(root: Path, config: dict[str, Any]) -> Path:
    """A dir with only checkpoint.json, written by another tool (no saved config, no lock)."""
    directory = root / experiment_dir_name(NOW - timedelta(days=1), config["experiment_id"])
    directory.mkdir(parents=True)
    (directory / CHECKPOINT_NAME).write_text(
        json.dumps(
            {
                "version": "2.0",
                "experiment_id": config["experiment_id"],
                "experiment_dir": str(directory),
                "config_hash": config_hash(config),
                "completed_runs": {"T0": {"00": {"1": "passed"}}},
                "status": "interrupted",
                "pid": 123,
            }
        )
    )
    return directory


def test_older_layout_resumes_when_the_hash_matches(tmp_path: Path) -> None:
    directory = older_layout_dir(tmp_path, experiment())
    plan = plan_session(PlanRequest(given=experiment(), results_root=tmp_path), NOW)
    assert plan.mode == "resume"
    assert plan.experiment_dir == directory
    assert plan.save_config is True
    assert plan.experiment == experiment()
    assert plan.checkpoint is not None
    assert plan.checkpoint.completed_runs == {RunKey("T0", "00", 1): "passed"}
    assert load_saved_config(directory) is None


def test_older_layout_refuses_a_different_hash(tmp_path: Path) -> None:
    directory = older_layout_dir(tmp_path, experiment())
    message = refusal(PlanRequest(given=experiment(judges=["x"]), results_root=tmp_path))
    assert str(directory) in message
    assert config_hash(experiment()) in message
    assert config_hash(experiment(judges=["x"])) in message


def test_older_layout_needs_the_config(tmp_path: Path) -> None:
    directory = older_layout_dir(tmp_path, experiment())
    message = refusal(PlanRequest(given=None, results_root=tmp_path, experiment_dir=directory))
    assert str(directory) in message
    assert "config" in message


def test_refusal_writes_nothing_in_an_older_layout_dir(tmp_path: Path) -> None:
    older_layout_dir(tmp_path, experiment())
    before = snapshot(tmp_path)
    refusal(PlanRequest(given=experiment(judges=["x"]), results_root=tmp_path))
    assert snapshot(tmp_path) == before
