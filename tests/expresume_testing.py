"""Test helpers: a small experiment for pytester sessions, experiment dirs built by hand,
and ways to inspect both."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from pytest_expresume import RunKey

#: The name of a hand-built experiment dir (the ``exp`` fixture), shaped as the plugin names them.
EXPERIMENT = "2026-01-20T06-50-26-test-001"

#: Options for the experiment sessions the tests start. The sessions never use Hypothesis, and
#: its plugin imports all of Hypothesis at the end of every session, xdist workers included:
#: about 1 s a process with PYTHONDONTWRITEBYTECODE set (pytest then rewrites Hypothesis's
#: modules every time), about 0.35 s with bytecode cached.
PYTEST_ARGS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def pytest_command(*args: str) -> list[str]:
    """The command line of an experiment session in a process of its own."""
    return [sys.executable, "-m", "pytest", *PYTEST_ARGS, *args]


#: The ``-n 2`` case of a test run in-process and under pytest-xdist (skipped without it).
XDIST = pytest.param(["-n", "2"], id="xdist", marks=pytest.mark.xdist)

#: A test body that logs every execution (one line per run started) and fills result.
AGENT_TEST = """
import json, os, pathlib
import pytest

def test_agent(experiment_run):
    run = experiment_run
    with open(pathlib.Path(os.environ.get("EXEC_LOG", "executions.log")), "a") as log:
        log.write(f"{run.tier}/{run.subtest}/{run.run}\\n")
    run.result["judges_seen"] = list(run.config.get("judges", ()))
    run.result["score"] = run.run * 10
    behaviour = run.config.get("behaviour", {}).get(f"{run.tier}-{run.subtest}-{run.run}")
    if behaviour == "fail":
        assert False, "judges said no"
    if behaviour == "error":
        raise RuntimeError("rate limited")
    if behaviour == "skip":
        pytest.skip("not today")
    if behaviour == "interrupt":
        raise KeyboardInterrupt
"""


def write_experiment(pytester: pytest.Pytester, **overrides: Any) -> dict[str, Any]:
    """experiment.json + pytest.ini (pointing at it) + the agent test; returns the config."""
    experiment: dict[str, Any] = {
        "experiment_id": "demo",
        "tiers": ["T0", "T1"],
        "subtests": ["00", "01"],
        "runs_per_subtest": 2,
        "judges": ["opus", "sonnet", "haiku"],
        "thinking_mode": "none",
    }
    experiment.update(overrides)
    experiment = {k: v for k, v in experiment.items() if v is not None}
    pytester.path.joinpath("experiment.json").write_text(json.dumps(experiment))
    pytester.makeini("[pytest]\nexpresume_config = experiment.json\n")
    pytester.makepyfile(test_agent=AGENT_TEST)
    return experiment


def experiment_dirs(pytester: pytest.Pytester) -> list[Path]:
    """The experiment dirs under results/, oldest first."""
    root = pytester.path / "results"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def only_experiment_dir(pytester: pytest.Pytester) -> Path:
    dirs = experiment_dirs(pytester)
    assert len(dirs) == 1, dirs
    return dirs[0]


def checkpoint_json(experiment_dir: Path) -> dict[str, Any]:
    """checkpoint.json as written (after the session's compaction)."""
    data: dict[str, Any] = json.loads((experiment_dir / "checkpoint.json").read_text())
    return data


def statuses(experiment_dir: Path) -> dict[str, str]:
    """'T0/00/1' -> status, from checkpoint.json."""
    completed = checkpoint_json(experiment_dir)["completed_runs"]
    return {
        f"{tier}/{subtest}/{run}": status
        for tier, subtests in completed.items()
        for subtest, runs in subtests.items()
        for run, status in runs.items()
    }


def executions(pytester: pytest.Pytester) -> list[str]:
    log = pytester.path / "executions.log"
    return log.read_text().split() if log.exists() else []


def snapshot_tree(root: Path, *, skip: Collection[str] = ()) -> dict[str, tuple[str, str]]:
    """Every entry under root, but those in a dir named in skip: its kind and content
    (a hash of a file's bytes, a link's target)."""
    tree: dict[str, tuple[str, str]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in skip for part in rel.parts):
            continue
        if path.is_symlink():
            tree[str(rel)] = ("link", os.readlink(path))
        elif path.is_dir():
            tree[str(rel)] = ("dir", "")
        else:
            tree[str(rel)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return tree


def tree_digest(root: Path) -> dict[str, tuple[str, str]]:
    """snapshot_tree of a pytester dir: the caches its sessions write are left out."""
    return snapshot_tree(root, skip={"__pycache__", ".pytest_cache"})


# -- experiment dirs built by hand --


def write_json(path: Path, value: Any, *, indent: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=indent))
    return path


def write_result(exp: Path, key: RunKey, value: Any) -> Path:
    """value as the run_result.json of key's run dir in the experiment dir exp."""
    return write_json(
        exp / key.tier / key.subtest / f"run_{key.run:02d}" / "run_result.json", value
    )


def journal_records(experiment_dir: Path) -> list[bytes]:
    """The journal's record lines; its first line, naming the snapshot generation the journal
    follows, is not a record."""
    path = experiment_dir / "checkpoint.journal"
    lines = path.read_bytes().splitlines() if path.exists() else []
    if lines and lines[0].startswith(b'{"generation"'):
        lines = lines[1:]
    return lines
