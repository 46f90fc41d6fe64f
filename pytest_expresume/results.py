"""Results as data: every current run's result file as a typed record, streamed, and the
figures built from them (per-tier duration, cost, pass rate with its Wilson interval).

Reads only: nothing here writes to the experiment dir, so it works while a session runs.
"""

from __future__ import annotations

import csv
import importlib
import math
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeGuard

import orjson

from .grid import RunKey
from .scanner import ResultStatus, iter_result_files

#: The fields every record has, in the order exports write them.
RECORD_FIELDS = (
    "tier",
    "subtest",
    "run",
    "status",
    "finished_at",
    "duration_seconds",
    "message",
    "path",
)


@dataclass(frozen=True)
class RunResult:
    """One run's current result file: the plugin's fields and the test's ``result`` dict."""

    tier: str
    subtest: str
    run: int
    status: str
    finished_at: str | None
    duration_seconds: float | None
    message: str | None
    path: Path
    #: The test's ``result`` dict as saved (the plugin's ``expresume`` key left out).
    result: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> RunKey:
        """The run key (tier, subtest, run)."""
        return RunKey(self.tier, self.subtest, self.run)


def iter_results(
    experiment_dir: Path, *, result_status: ResultStatus | None = None
) -> Iterator[RunResult]:
    """Each run's current result (earlier attempts in ``.attempts/`` are not current), one
    at a time, in tier, subtest, run order of the directories; unusable files are left
    out (``--rebuild-checkpoint`` lists them)."""
    for key, path, content, found in iter_result_files(Path(experiment_dir), result_status):
        own = content.pop("expresume", None)
        own = own if isinstance(own, dict) else {}
        duration = own.get("duration_seconds")
        message = own.get("message")
        yield RunResult(
            tier=key.tier,
            subtest=key.subtest,
            run=key.run,
            status=found.status,
            finished_at=found.finished_at,
            duration_seconds=float(duration) if _is_number(duration) else None,
            message=message if isinstance(message, str) else None,
            path=Path(path),
            result=MappingProxyType(content),
        )


def load_results(
    experiment_dir: Path | str, *, result_status: ResultStatus | None = None
) -> list[RunResult]:
    """One record per run of the experiment's current attempts, sorted by run key."""
    return sorted(
        iter_results(Path(experiment_dir), result_status=result_status), key=lambda r: r.key
    )


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level, keys joined with dots (``judge_votes.opus``); lists
    stay values."""
    flat: dict[str, Any] = {}
    _flatten_into(flat, value, prefix)
    return flat


def _flatten_into(flat: dict[str, Any], value: Mapping[str, Any], prefix: str) -> None:
    for name, item in value.items():
        key = f"{prefix}{name}"
        if isinstance(item, Mapping) and item:
            _flatten_into(flat, item, key + ".")
            continue
        # {"a.b": 1, "a": {"b": 2}} both flatten to a.b: the second becomes "a.b (2)",
        # never dropped.
        unique, n = key, 1
        while unique in flat:
            n += 1
            unique = f"{key} ({n})"
        flat[unique] = item


def record_row(record: RunResult) -> dict[str, Any]:
    """A record as one flat row: the fixed fields, then the user's fields with dots (one
    that collides with a fixed field, say its own ``status``, gets a suffix: ``status (2)``)."""
    row = _fixed_fields(record)
    _flatten_into(row, record.result, "")
    return row


def _fixed_fields(record: RunResult) -> dict[str, Any]:
    return {
        "tier": record.tier,
        "subtest": record.subtest,
        "run": record.run,
        "status": record.status,
        "finished_at": record.finished_at,
        "duration_seconds": record.duration_seconds,
        "message": record.message,
        "path": str(record.path),
    }


def results_frame(experiment_dir: Path | str, *, result_status: ResultStatus | None = None) -> Any:
    """:func:`load_results` as a pandas DataFrame, one row per run, the user's fields
    flattened with dots (needs pandas: ``pip install pytest-expresume[pandas]``)."""
    try:
        # Imported here: an optional extra that only this function needs.
        pandas: Any = importlib.import_module("pandas")
    except ImportError:
        raise ImportError(
            "results_frame needs pandas, an optional extra: "
            "pip install 'pytest-expresume[pandas]' (load_results needs nothing more)"
        ) from None
    rows = [record_row(r) for r in load_results(experiment_dir, result_status=result_status)]
    return pandas.DataFrame(rows, columns=_columns(rows) if rows else list(RECORD_FIELDS))


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    columns: dict[str, None] = dict.fromkeys(RECORD_FIELDS)
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def export_results(
    experiment_dir: Path, target: Path, *, result_status: ResultStatus | None = None
) -> int:
    """Write every current run's result to ``target``: JSON Lines (``.jsonl``) or CSV
    (``.csv``), streamed (CSV reads the files twice: once for its columns). Returns the
    number of runs written."""
    suffix = target.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise ValueError(f"{target}: the export's suffix must be .csv or .jsonl")
    written = 0
    if suffix == ".jsonl":
        temp = target.with_name(f".{target.name}.tmp")
        with open(temp, "wb") as out:
            for record in iter_results(experiment_dir, result_status=result_status):
                row = {**_fixed_fields(record), "result": dict(record.result)}
                out.write(orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS) + b"\n")
                written += 1
        os.replace(temp, target)  # whole or not at all
        return written
    # Two passes (the columns first): a run that finishes between them (a session is
    # running) is left out, as it would be had the export started a moment earlier; a
    # result file rewritten between them keeps only the columns the first pass saw.
    seen: set[RunKey] = set()
    rows = (record_row(r) for r in iter_results(experiment_dir, result_status=result_status))
    columns = _columns(_noting_keys(rows, seen))
    temp = target.with_name(f".{target.name}.tmp")
    with open(temp, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for record in iter_results(experiment_dir, result_status=result_status):
            if record.key in seen:
                writer.writerow({k: _csv_cell(v) for k, v in record_row(record).items()})
                written += 1
    os.replace(temp, target)
    return written


def _noting_keys(rows: Iterable[dict[str, Any]], seen: set[RunKey]) -> Iterator[dict[str, Any]]:
    for row in rows:
        seen.add(RunKey(row["tier"], row["subtest"], row["run"]))
        yield row


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return value


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def wilson_interval(passed: int, total: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a pass rate (95% by default); (0, 1) for no runs."""
    if total <= 0:
        return 0.0, 1.0
    p = passed / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    # At 0 and at 1 the bounds are exactly 0 and 1; the floating-point sum misses by 1e-17.
    low = 0.0 if passed <= 0 else max(0.0, centre - half)
    high = 1.0 if passed >= total else min(1.0, centre + half)
    return low, high


@dataclass
class TierFigures:
    """Sums over one tier's current result files."""

    passed: int = 0
    verdicts: int = 0
    duration_seconds: float = 0.0
    timed: int = 0
    cost: float = 0.0
    costed: int = 0

    def add(self, status: str, duration: float | None, cost: Any) -> None:
        """Count one run's result."""
        if status in ("passed", "failed"):
            self.verdicts += 1
            self.passed += status == "passed"
        if duration is not None:
            self.duration_seconds += duration
            self.timed += 1
        if _is_number(cost) and math.isfinite(cost):
            self.cost += cost
            self.costed += 1

    @property
    def mean_duration(self) -> float | None:
        """Seconds per timed run, or None."""
        return self.duration_seconds / self.timed if self.timed else None


@dataclass(frozen=True)
class RunBrief:
    """What the figures need of one result file (no Path, no copy of the result)."""

    key: RunKey
    status: str
    duration_seconds: float | None
    message: str | None
    cost: Any


def _run_briefs(
    experiment_dir: Path, cost_key: str, result_status: ResultStatus | None
) -> Iterator[RunBrief]:
    for key, _, content, found in iter_result_files(experiment_dir, result_status):
        own = content.get("expresume")
        own = own if isinstance(own, dict) else {}
        duration = own.get("duration_seconds")
        message = own.get("message")
        yield RunBrief(
            key,
            found.status,
            float(duration) if _is_number(duration) else None,
            message if isinstance(message, str) else None,
            content.get(cost_key),
        )


def tier_figures(
    experiment_dir: Path,
    cost_key: str = "cost_usd",
    *,
    result_status: ResultStatus | None = None,
    grid: Collection[RunKey] | None = None,
    each: Callable[[RunBrief], None] | None = None,
) -> dict[str, TierFigures]:
    """Per tier (and ``total``), the sums the status and the report show, streamed over
    the result files (of the grid's runs, when it is known, as the counts are); ``each``
    sees every run counted (the report's heat map and errors)."""
    figures: dict[str, TierFigures] = {}
    total = TierFigures()
    inside = set(grid) if grid is not None else None
    for brief in _run_briefs(experiment_dir, cost_key, result_status):
        if inside is not None and brief.key not in inside:
            continue  # outside a grid that shrank: kept on disk, not counted
        figures.setdefault(brief.key.tier, TierFigures()).add(
            brief.status, brief.duration_seconds, brief.cost
        )
        total.add(brief.status, brief.duration_seconds, brief.cost)
        if each is not None:
            each(brief)
    figures["total"] = total
    return figures
