"""Recording a finished run: its result file first, then one checkpoint record.

A run's outcome is worked out where the test ran (in-process or on an xdist worker) and
travels to the recording process inside the test report, as :class:`FinishedRun`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clock import utc_now
from .grid import RunKey
from .layout import result_path, write_result_file
from .statuses import RunStatus, Tally
from .store import CheckpointStore

#: The test report attribute that carries a run's key (every phase) and outcome (the last).
REPORT_FIELD = "expresume"


@dataclass(frozen=True)
class FinishedRun:
    """The final attempt of a run as the process that ran it saw it."""

    key: RunKey
    status: RunStatus
    message: str | None
    #: The test's ``result`` dict, already serialized.
    result_json: bytes
    duration_seconds: float
    #: Values of the result JSON could not hold, as saved (``expresume.conversions``).
    conversions: tuple[dict[str, str], ...] = ()
    #: The run's last attempt: no retry plugin will run it again, so it is recorded.
    final: bool = False
    #: Set when the process that ran the test wrote the result file itself (at this time).
    written_at: str | None = None
    #: The attempt's steps (``expresume.steps``): name -> reused, duration_seconds.
    steps: dict[str, Any] = field(default_factory=dict)
    #: Why the session must stop after this run (the process that ran it could not write
    #: a step's value or its result file): the recording process stops it, saying this.
    stops_session: str | None = None

    def to_report(self) -> dict[str, Any]:
        """The report field's form: plain JSON values (xdist serializes reports)."""
        return {
            **key_to_report(self.key),
            "status": self.status,
            "message": self.message,
            "result": self.result_json.decode(),
            "duration": self.duration_seconds,
            "conversions": list(self.conversions),
            "final": self.final,
            "written_at": self.written_at,
            "steps": self.steps,
            "stops_session": self.stops_session,
        }


def key_to_report(key: RunKey) -> dict[str, Any]:
    """The report field of a run's phase that is not its last: only the run key."""
    return {"tier": key.tier, "subtest": key.subtest, "run": key.run}


def run_key_of_report(report: object) -> RunKey | None:
    """The run key a test report carries, or None for a report of another test."""
    field: Mapping[str, Any] | None = getattr(report, REPORT_FIELD, None)
    if field is None:
        return None
    return RunKey(field["tier"], field["subtest"], field["run"])


def finished_run_of_report(report: object) -> FinishedRun | None:
    """The finished run a run's last report carries, or None for any other report."""
    field: Mapping[str, Any] | None = getattr(report, REPORT_FIELD, None)
    if field is None or "status" not in field:
        return None
    return FinishedRun(
        key=RunKey(field["tier"], field["subtest"], field["run"]),
        status=field["status"],
        message=field["message"],
        result_json=field["result"].encode(),
        duration_seconds=float(field["duration"]),
        conversions=tuple(field.get("conversions") or ()),
        final=bool(field.get("final")),
        written_at=field.get("written_at"),
        steps=dict(field.get("steps") or {}),
        stops_session=field.get("stops_session"),
    )


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

    def __init__(self, store: CheckpointStore, *, fsync: bool) -> None:
        self.store = store
        self.fsync = fsync
        #: Runs recorded by this session.
        self.session_counts = Tally()

    def record(self, run: FinishedRun, *, nodeid: str) -> RunRecord:
        """Write the result file (unless the process that ran the test did), then append
        the status to the checkpoint."""
        key, status = run.key, run.status
        if run.written_at is None:
            path, finished_at = write_run_result(
                self.store.experiment_dir, run, nodeid=nodeid, fsync=self.fsync
            )
        else:
            path, finished_at = result_path(self.store.experiment_dir, key), run.written_at
        # The result file is on disk before the index names it: the index may lag, never lead.
        # With fsync the file (and its dir entries) were flushed first: said in the record,
        # so the start after a dead session does not read it back.
        self.store.record(key, status, at=finished_at, flushed=self.fsync)
        self.session_counts.add(key, status)
        return RunRecord(key, status, nodeid, run.duration_seconds, finished_at, run.message, path)


def write_run_result(
    experiment_dir: Path, run: FinishedRun, *, nodeid: str, fsync: bool
) -> tuple[Path, str]:
    """Write a finished run's result file; returns its path and the time it names."""
    finished_at = utc_now()
    fields: dict[str, Any] = {
        "status": run.status,
        "tier": run.key.tier,
        "subtest": run.key.subtest,
        "run": run.key.run,
        "nodeid": nodeid,
        "duration_seconds": round(run.duration_seconds, 6),
        "finished_at": finished_at,
    }
    if run.status in ("failed", "error"):
        fields["message"] = run.message or ""
    if run.conversions:
        fields["conversions"] = list(run.conversions)
    if run.steps:
        fields["steps"] = run.steps
    path = write_result_file(experiment_dir, run.key, run.result_json, fields, fsync=fsync)
    return path, finished_at
