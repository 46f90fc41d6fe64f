"""Rebuilding a checkpoint from the result files, the durable record of what ran."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .atomic_write import fsync_dir
from .clock import file_stamp, utc_now
from .config import ConfigError, config_hash
from .grid import RunKey
from .layout import (
    load_saved_config,
    parse_experiment_dir_name,
    result_path,
    result_roots,
    run_dir,
)
from .scanner import ResultStatus, ScanReport, scan_result_files
from .statuses import grid_complete, tally
from .store import KNOWN_FIELDS, Checkpoint, CheckpointError, CheckpointStore


@dataclass
class RebuildReport:
    """What a rebuild found and did."""

    experiment_dir: Path
    #: Runs the checkpoint listed before (None: it could not be read).
    original_count: int | None
    checkpoint: Checkpoint
    scan: ScanReport
    #: Copies made before anything was overwritten.
    backups: list[Path] = field(default_factory=list)
    #: Runs the old checkpoint listed that have no usable result file, and why.
    unbacked: dict[RunKey, str] = field(default_factory=dict)
    #: Where a corrupt checkpoint was set aside, and why it was corrupt.
    set_aside: Path | None = None
    corruption: str | None = None
    #: The statuses the old checkpoint gave the dropped runs.
    listed: dict[RunKey, str] = field(default_factory=dict)

    @property
    def rebuilt_count(self) -> int:
        """Runs in the rebuilt checkpoint."""
        return len(self.checkpoint.completed_runs)

    def per_tier(self) -> dict[str, Counter[str]]:
        """Status counts of the rebuilt checkpoint, per tier."""
        return {
            name: Counter({status: n for status, n in tier.counts.items() if n})
            for name, tier in tally(self.checkpoint.completed_runs).tiers.items()
        }

    def lines(self) -> list[str]:
        """The report a user reads."""
        original = "unreadable" if self.original_count is None else str(self.original_count)
        difference = self.rebuilt_count - (self.original_count or 0)
        lines = [f"expresume: rebuilt the checkpoint of {self.experiment_dir}"]
        if self.corruption is not None:
            lines.append(f"  the checkpoint was corrupt ({self.corruption})")
        if self.set_aside is not None:
            lines.append(f"  set aside as {self.set_aside.name}")
        lines += [f"  backup: {path.name}" for path in self.backups]
        lines += [
            f"  original completed_runs: {original}",
            f"  rebuilt completed_runs:  {self.rebuilt_count}",
            f"  difference:              {difference:+d}",
        ]
        for tier, counts in self.per_tier().items():
            detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            lines.append(f"  {tier}: {sum(counts.values())} runs ({detail})")
        for path, reason in self.scan.problems:
            lines.append(f"  not used: {path}: {reason}")
        for key, why in self.unbacked.items():
            lines.append(
                f"  dropped: {key.tier}/{key.subtest}/run {key.run} was in the checkpoint "
                f"as {self.listed.get(key, '?')!r}, but {why}"
            )
        return lines


def _unique(path: Path) -> Path:
    candidate, n = path, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _copy_aside(path: Path, suffix: str, *, fsync: bool) -> Path | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    target = _unique(path.with_name(f"{path.name}.{suffix}"))
    shutil.copyfile(path, target)
    if fsync:
        with open(target, "rb") as copied:
            os.fsync(copied.fileno())
        fsync_dir(path.parent)
    return target


def _metadata(store: CheckpointStore) -> tuple[Checkpoint | None, dict[str, Any], str | None]:
    """The old checkpoint if readable, its raw fields if at least an object, and the error."""
    try:
        return store.load_locked(), {}, None
    except CheckpointError as exc:
        raw: dict[str, Any] = {}
        try:
            parsed = orjson.loads(store.checkpoint_path.read_bytes())
            if isinstance(parsed, dict):
                raw = parsed
        except (OSError, orjson.JSONDecodeError):
            pass
        return None, raw, str(exc)


def rebuild_checkpoint(
    experiment_dir: Path,
    *,
    result_status: ResultStatus | None = None,
    fsync: bool = True,
    set_aside_corrupt: bool = False,
    grid_keys: Collection[RunKey] | None = None,
    rerun: Collection[str] = frozenset({"error"}),
) -> RebuildReport:
    """Rebuild ``completed_runs`` from the result files and write it, under the lock.

    The current ``checkpoint.json`` (and a non-empty journal) is copied to
    ``checkpoint.json.bak-<timestamp>`` before anything is written. With
    ``set_aside_corrupt`` a checkpoint that cannot be read is renamed to
    ``checkpoint.json.corrupt-<timestamp>`` instead. Metadata and unknown fields of the old
    checkpoint are kept; running it twice gives the same checkpoint. ``grid_keys`` (when
    known) decides between ``completed`` and ``interrupted``.
    """
    stamp = file_stamp()
    with CheckpointStore(experiment_dir, fsync=fsync) as store, store.locked():
        old, raw, corruption = _metadata(store)
        report_backups: list[Path] = []
        set_aside: Path | None = None
        if corruption is not None and set_aside_corrupt and store.checkpoint_path.exists():
            set_aside = _unique(store.checkpoint_path.with_name(f"checkpoint.json.corrupt-{stamp}"))
            store.checkpoint_path.rename(set_aside)
        else:
            backup = _copy_aside(store.checkpoint_path, f"bak-{stamp}", fsync=fsync)
            if backup is not None:
                report_backups.append(backup)
        journal_backup = _copy_aside(store.journal_path, f"bak-{stamp}", fsync=fsync)
        if journal_backup is not None:
            report_backups.append(journal_backup)

        scan = scan_result_files(experiment_dir, result_status)
        checkpoint = _rebuilt(experiment_dir, old, raw, scan)
        if old is None:
            # Journal run records only index result files (a record whose file moved to
            # .attempts/ is stale), so only the experiment's status is taken from it.
            store.replay_journal(checkpoint, runs=False)
        lost = sorted(set(old.completed_runs) - set(checkpoint.completed_runs)) if old else []
        unbacked = {key: _why_unbacked(experiment_dir, key, scan) for key in lost}
        if grid_keys is not None:
            done = grid_complete(checkpoint.completed_runs, grid_keys, rerun)
            checkpoint.status = "completed" if done else "interrupted"
        elif unbacked and checkpoint.status == "completed":
            checkpoint.status = "interrupted"
        store.replace_locked(checkpoint)

    return RebuildReport(
        experiment_dir=experiment_dir,
        original_count=len(old.completed_runs) if old is not None else None,
        checkpoint=checkpoint,
        scan=scan,
        backups=report_backups,
        unbacked=unbacked,
        set_aside=set_aside,
        corruption=corruption,
        listed={key: old.completed_runs[key] for key in unbacked} if old else {},
    )


def _why_unbacked(experiment_dir: Path, key: RunKey, scan: ScanReport) -> str:
    """Why a run the checkpoint listed has no result to rebuild it from."""
    roots = result_roots(experiment_dir)
    problems = dict(scan.problems)
    for root in roots:
        path = result_path(root, key)
        if path in problems:
            return f"its result file {path} is not usable: {problems[path]}"
    for root in roots:
        if run_dir(root, key).is_dir():
            return (
                f"its run dir {run_dir(root, key)} has no result file (the run was in flight "
                "when a session died, or its file was removed)"
            )
    where = ", ".join(str(run_dir(root, key).relative_to(experiment_dir)) for root in roots)
    return f"no run dir for it exists (looked in {where})"


def recover_checkpoint(
    experiment_dir: Path, *, result_status: ResultStatus | None = None
) -> tuple[Checkpoint, str]:
    """Read-only: a corrupt checkpoint's state rebuilt in memory, and what was wrong."""
    with CheckpointStore(experiment_dir) as store, store.locked(create=False):
        old, raw, corruption = _metadata(store)
        if old is not None:
            return old, ""
        checkpoint = _rebuilt(
            experiment_dir, None, raw, scan_result_files(experiment_dir, result_status)
        )
        store.replay_journal(checkpoint, runs=False)
        return checkpoint, corruption or "unreadable"


def _rebuilt(
    experiment_dir: Path, old: Checkpoint | None, raw: dict[str, Any], scan: ScanReport
) -> Checkpoint:
    completed: dict[RunKey, str] = {key: scan.found[key].status for key in sorted(scan.found)}
    # A result file now speaks for a run an older tool had marked with its own status.
    finished = [r.finished_at for r in scan.found.values() if r.finished_at]
    if old is not None:
        base = old
    else:
        saved = None
        with contextlib.suppress(ConfigError):
            saved = load_saved_config(experiment_dir)
        started_at, dir_id = parse_experiment_dir_name(experiment_dir.name) or (
            "",
            experiment_dir.name,
        )
        base = Checkpoint(
            experiment_id=_str(raw.get("experiment_id"))
            or _str((saved or {}).get("experiment_id"))
            or dir_id,
            experiment_dir=str(experiment_dir.resolve()),
            config_hash=_str(raw.get("config_hash")) or (config_hash(saved) if saved else ""),
            status="interrupted",
            started_at=_str(raw.get("started_at")) or started_at,
            last_updated_at=_str(raw.get("last_updated_at")) or utc_now(),
            extra={k: v for k, v in raw.items() if k not in KNOWN_FIELDS},
        )
    return Checkpoint(
        experiment_id=base.experiment_id,
        experiment_dir=base.experiment_dir or str(experiment_dir.resolve()),
        config_hash=base.config_hash,
        completed_runs=completed,
        status=base.status,
        started_at=base.started_at,
        last_updated_at=max(finished) if finished else base.last_updated_at,
        extra=dict(base.extra),
        foreign_runs=dict(base.foreign_runs),
    )


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
