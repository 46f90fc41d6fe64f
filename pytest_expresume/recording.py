"""Recording a finished run: its result file first, then one checkpoint record."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .grid import RunKey
from .layout import write_result_file
from .store import CheckpointStore, RunStatus, utc_now


@dataclass(frozen=True)
class RunRecord:
    """What was recorded for one run; handed to ``pytest_expresume_run_recorded``."""

    key: RunKey
    status: RunStatus
    nodeid: str
    duration_seconds: float
    finished_at: str
    message: str | None
    result_path: Path


class RunRecorder:
    """Writes result files and checkpoint records for one experiment, counting per tier."""

    def __init__(
        self,
        store: CheckpointStore,
        *,
        fsync: bool,
        on_recorded: Callable[[RunRecord], None] | None = None,
    ) -> None:
        self.store = store
        self.fsync = fsync
        self.on_recorded = on_recorded
        #: (tier, status) -> runs recorded by this session.
        self.session_counts: Counter[tuple[str, str]] = Counter()

    def record(
        self,
        key: RunKey,
        status: RunStatus,
        *,
        nodeid: str,
        duration_seconds: float,
        result_json: bytes,
        message: str | None,
    ) -> RunRecord:
        """Write the result file, then append the status to the checkpoint."""
        finished_at = utc_now()
        fields: dict[str, Any] = {
            "status": status,
            "tier": key.tier,
            "subtest": key.subtest,
            "run": key.run,
            "nodeid": nodeid,
            "duration_seconds": round(duration_seconds, 6),
            "finished_at": finished_at,
        }
        if status in ("failed", "error"):
            fields["message"] = message or ""
        path = write_result_file(
            self.store.experiment_dir, key, result_json, fields, fsync=self.fsync
        )
        # The result file is on disk before the index names it: the index may lag, never lead.
        self.store.record(key, status, at=finished_at)
        self.session_counts[key.tier, status] += 1
        record = RunRecord(key, status, nodeid, duration_seconds, finished_at, message, path)
        if self.on_recorded is not None:
            self.on_recorded(record)
        return record
