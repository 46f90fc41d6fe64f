"""The checkpoint: a JSON snapshot plus an append-only journal, under one lock file.

Layout inside an experiment dir:

- ``checkpoint.json``: the compacted state, replaced atomically (never edited in place);
- ``checkpoint.journal`` (see :mod:`.journal`): one JSON object per line, appended per
  recorded run; replayed over the snapshot on load. A torn last line (a writer killed
  mid-append) is ignored and cut off before the next append. Its first line names the
  snapshot generation it follows (``{"generation": 3}``; none: 0): a journal older than the
  snapshot (a power cut after a compaction flushed the snapshot, before the journal's
  truncation reached the disk) is never replayed over it;
- ``checkpoint.lock``: the file every change locks. It is never replaced or deleted: locking
  a file that is later replaced would let two writers in.

Every change is: lock, (read the newest state when the change needs it), apply, write,
unlock. Recording a run appends one line, so its cost does not grow with the checkpoint;
the journal is folded into the snapshot at session end and when it grows large compared to
the snapshot (which keeps the amortised cost per run constant).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import portalocker

from .atomic_write import write_atomic
from .bulk import collector_paused
from .clock import utc_now
from .grid import RunKey
from .journal import JournalFile, journal_follows, journal_has_records, read_journal
from .layout import CHECKPOINT_NAME, JOURNAL_NAME, LOCK_NAME
from .statuses import EXPERIMENT_STATES, RUN_STATUSES, ExperimentState, RunStatus, tally

KNOWN_FIELDS = (
    "version",
    "experiment_id",
    "experiment_dir",
    "config_hash",
    "completed_runs",
    "status",
    "started_at",
    "last_updated_at",
    "generation",
    "recorded_since_clean_end",
)

#: ProjectScylla's checkpoint versions, read and upgraded to version 1: their
#: ``completed_runs`` view is read (a status of their own, such as ``agent_complete``, is
#: kept as it is and not done), every other field (``run_states``, ``tier_states``, ...) is
#: kept unchanged.
FOREIGN_VERSIONS = ("2.0", "3.0", "3.1")

#: Fold the journal into the snapshot once it is this many bytes, or larger than
#: ``_COMPACT_BYTES_PER_RUN`` times the runs in the snapshot, whichever is more.
_COMPACT_MIN_BYTES = 1 << 20
_COMPACT_BYTES_PER_RUN = 64


class CheckpointError(Exception):
    """A checkpoint that cannot be read as one (missing, not JSON, wrong shape)."""


@dataclass
class Checkpoint:
    """The state of one experiment: run statuses (keys are ints in memory) and metadata."""

    experiment_id: str
    experiment_dir: str
    config_hash: str
    completed_runs: dict[RunKey, str] = field(default_factory=dict)
    status: str = "running"
    started_at: str = field(default_factory=utc_now)
    last_updated_at: str = field(default_factory=utc_now)
    #: Fields this plugin does not know; written back unchanged on every rewrite.
    extra: dict[str, Any] = field(default_factory=dict)
    #: How many times the journal was folded in; the journal names the one it follows.
    generation: int = 0
    #: Runs recorded since a session last ended cleanly: after a session that did not (a
    #: power cut with fsync off can empty a result file the index lists), these are the
    #: result files the next start checks.
    recorded_since_clean_end: set[RunKey] = field(default_factory=set)
    #: Run entries of an older layout with a status this plugin does not know (e.g.
    #: ``(tier, subtest, "3") -> "agent_complete"``): not done, but written back unchanged.
    foreign_runs: dict[tuple[str, str, str], Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON form: run keys become strings, unknown fields are kept."""
        # Sorted, so that the same state always gives the same bytes.
        entries: list[tuple[str, str, int, str, Any]] = [
            (k.tier, k.subtest, k.run, str(k.run), status)
            for k, status in self.completed_runs.items()
        ]
        entries += [
            (tier, subtest, _run_order(run), run, value)
            for (tier, subtest, run), value in self.foreign_runs.items()
            if not run.isdigit() or RunKey(tier, subtest, int(run)) not in self.completed_runs
        ]
        entries.sort(key=lambda e: (e[0], e[1], e[2], e[3]))
        nested: dict[str, dict[str, dict[str, Any]]] = {}
        for tier, subtest, _, run, value in entries:
            nested.setdefault(tier, {}).setdefault(subtest, {})[run] = value
        data: dict[str, Any] = {
            "version": 1,
            "experiment_id": self.experiment_id,
            "experiment_dir": self.experiment_dir,
            "config_hash": self.config_hash,
            "completed_runs": nested,
            "status": self.status,
            "started_at": self.started_at,
            "last_updated_at": self.last_updated_at,
            "generation": self.generation,
        }
        if self.recorded_since_clean_end:
            since: dict[str, dict[str, list[int]]] = {}
            for key in sorted(self.recorded_since_clean_end):
                since.setdefault(key.tier, {}).setdefault(key.subtest, []).append(key.run)
            data["recorded_since_clean_end"] = since
        data.update(self.extra)
        return data

    @classmethod
    def from_json(cls, data: Any) -> Checkpoint:
        """Parse the JSON form (version 1, or ProjectScylla's "2.0", "3.0", "3.1"); wrong
        shapes raise."""
        if not isinstance(data, dict):
            raise CheckpointError(f"it holds a JSON {type(data).__name__}, not an object")
        version = data.get("version")
        if version not in (1, *FOREIGN_VERSIONS):
            raise CheckpointError(f"unknown checkpoint version {version!r}")
        for name in ("experiment_id", "config_hash"):
            if not isinstance(data.get(name), str):
                raise CheckpointError(f"field {name!r} is missing or not a string")
        completed, foreign = _parse_completed(data.get("completed_runs", {}), version)
        generation = data.get("generation", 0)
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
            raise CheckpointError(f"generation {generation!r} is not a count")
        return cls(
            experiment_id=data["experiment_id"],
            experiment_dir=str(data.get("experiment_dir", "")),
            config_hash=data["config_hash"],
            completed_runs=completed,
            foreign_runs=foreign,
            status=str(data.get("status", "running")),
            started_at=str(data.get("started_at", "")),
            last_updated_at=str(data.get("last_updated_at", "")),
            generation=generation,
            recorded_since_clean_end=_parse_since(data.get("recorded_since_clean_end")),
            extra={k: v for k, v in data.items() if k not in KNOWN_FIELDS},
        )

    def counts(self) -> dict[str, int]:
        """How many runs have each status."""
        return tally(self.completed_runs).total.counts


def _run_order(run: str) -> int:
    return int(run) if run.isdigit() else -1


def _parse_completed(
    raw: Any, version: object
) -> tuple[dict[RunKey, str], dict[tuple[str, str, str], Any]]:
    if not isinstance(raw, dict):
        raise CheckpointError("completed_runs is not an object")
    completed: dict[RunKey, str] = {}
    foreign: dict[tuple[str, str, str], Any] = {}
    for tier, subtests in raw.items():
        if not isinstance(subtests, dict):
            raise CheckpointError(f"completed_runs[{tier!r}] is not an object")
        for subtest, runs in subtests.items():
            if not isinstance(runs, dict):
                raise CheckpointError(f"completed_runs[{tier!r}][{subtest!r}] is not an object")
            for run, status in runs.items():
                try:
                    number = int(run)
                except ValueError:
                    raise CheckpointError(f"run key {run!r} is not a number") from None
                if status in RUN_STATUSES:
                    completed[RunKey(tier, subtest, number)] = status
                elif version in FOREIGN_VERSIONS or isinstance(status, str):
                    # An older tool's own status (``agent_complete``), read from its layout or
                    # carried over when it was upgraded: not ours to judge, kept as it is.
                    foreign[tier, subtest, run] = status
                else:
                    raise CheckpointError(f"run {tier}/{subtest}/{run} has status {status!r}")
    return completed, foreign


def _apply(checkpoint: Checkpoint, record: Mapping[str, Any]) -> bool:
    """Apply one journal record; False if it is not one we understand."""
    at = record.get("at")
    if "experiment_status" in record:
        status = record["experiment_status"]
        if status not in EXPERIMENT_STATES:
            return False
        checkpoint.status = status
        if status == "paused_rate_limit":
            # ProjectScylla's fields for a pause, kept among the fields it knows.
            count = checkpoint.extra.get("pause_count")
            checkpoint.extra["pause_count"] = (count if isinstance(count, int) else 0) + 1
            checkpoint.extra["rate_limit_until"] = record.get("rate_limit_until")
            checkpoint.extra["rate_limit_source"] = record.get("rate_limit_source")
    else:
        tier, subtest, run, status = (record.get(k) for k in ("tier", "subtest", "run", "status"))
        if not (
            isinstance(tier, str)
            and isinstance(subtest, str)
            and isinstance(run, int)
            and status in RUN_STATUSES
        ):
            return False
        key = RunKey(tier, subtest, run)
        checkpoint.completed_runs[key] = status
        if record.get("flushed") is True:
            # Recorded again after its file was flushed: a listing from an earlier,
            # unflushed record of the same run no longer needs the check.
            checkpoint.recorded_since_clean_end.discard(key)
        else:
            checkpoint.recorded_since_clean_end.add(key)
    if isinstance(at, str):
        checkpoint.last_updated_at = at
    return True


def _replay(checkpoint: Checkpoint, lines: Iterable[bytes], *, runs: bool) -> int:
    """Apply the journal's record lines to ``checkpoint`` (with ``runs=False``, only the
    experiment's status); returns how many lines could not be read or applied."""
    skipped = 0
    for line in lines:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            skipped += 1
            continue
        if not isinstance(record, dict) or (
            (runs or "experiment_status" in record) and not _apply(checkpoint, record)
        ):
            skipped += 1
    return skipped


class _LockFile:
    """``checkpoint.lock``, kept open for the store's life once used."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @contextmanager
    def held(self, *, create: bool) -> Iterator[None]:
        if self._file is None:
            if not create and not self.path.exists():
                yield
                return
            # flock works on a read-only descriptor too.
            self._file = open(self.path, "ab" if create else "rb")  # noqa: SIM115
        portalocker.lock(self._file, portalocker.LOCK_EX)
        try:
            yield
        finally:
            portalocker.unlock(self._file)


class CheckpointStore:
    """Reads and changes one experiment's checkpoint safely across processes.

    Open it with :meth:`open` (or as a context manager) and close it when done.
    """

    def __init__(
        self, experiment_dir: Path, *, fsync: bool = True, fsync_journal: bool | None = None
    ) -> None:
        self.experiment_dir = experiment_dir
        self.fsync = fsync
        #: fsync each journal append too (default: as ``fsync``). The plugin turns it off:
        #: its result files are the durable record, and a start reconciles the index with
        #: them, so a journal tail lost to a power cut costs nothing.
        self.fsync_journal = fsync if fsync_journal is None else fsync_journal
        self.checkpoint_path = experiment_dir / CHECKPOINT_NAME
        self.journal_path = experiment_dir / JOURNAL_NAME
        self.lock_path = experiment_dir / LOCK_NAME
        self._lock = _LockFile(self.lock_path)
        self._journal = JournalFile(self.journal_path)
        self._snapshot_runs = 0
        #: The snapshot generation as last read or written by this store (None: not yet).
        self._generation: int | None = None
        #: The journal on disk is older than the snapshot: the next append starts it anew.
        self._journal_stale = False
        #: Journal lines that could not be read on the last load (torn or foreign).
        self.skipped_journal_lines = 0
        #: Records of a journal older than the snapshot, left out on the last load.
        self.stale_journal_records = 0

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the files this store keeps open."""
        self._journal.close()
        self._lock.close()

    def locked(self, *, create: bool = True) -> AbstractContextManager[None]:
        """Hold the experiment's checkpoint lock (blocking until it is free).

        With ``create=False`` (reads) a missing lock file is not created: no writer has
        ever changed this checkpoint, so there is nothing to wait for.
        """
        return self._lock.held(create=create)

    def exists(self) -> bool:
        """Whether a checkpoint snapshot is on disk."""
        return self.checkpoint_path.is_file()

    def create(self, checkpoint: Checkpoint) -> None:
        """Write the first snapshot of a new experiment (an existing one is left alone),
        flushed whatever ``fsync`` says: it is written once, and without it a power cut
        could leave an experiment that cannot be opened."""
        with self.locked():
            if not self.checkpoint_path.exists():
                self._write_snapshot(checkpoint, durable=True)

    def load(self) -> Checkpoint:
        """The newest state: the snapshot with the journal replayed over it (writes nothing)."""
        with self.locked(create=False):
            return self.load_locked()

    def record(
        self, key: RunKey, status: RunStatus, at: str | None = None, *, flushed: bool = False
    ) -> None:
        """Record a run's final status: one appended journal line.

        ``flushed``: the run's result file was flushed to disk before this record, so a
        power cut cannot have emptied it, and the start after a dead session need not read
        it back (such runs stay out of ``recorded_since_clean_end``).
        """
        record: dict[str, Any] = {
            "tier": key.tier,
            "subtest": key.subtest,
            "run": key.run,
            "status": status,
            "at": at or utc_now(),
        }
        if flushed:
            record["flushed"] = True
        self._append(record)

    def set_status(self, status: ExperimentState, at: str | None = None) -> None:
        """Set the experiment's status (running, interrupted, completed)."""
        self._append({"experiment_status": status, "at": at or utc_now()})

    def note_pause(self, until: str, source: str, at: str | None = None) -> None:
        """The experiment pauses for a rate limit until ``until`` (ISO 8601): status
        ``paused_rate_limit``, ``rate_limit_until``, ``rate_limit_source``, and one more
        ``pause_count``."""
        self._append(
            {
                "experiment_status": "paused_rate_limit",
                "rate_limit_until": until,
                "rate_limit_source": source,
                "at": at or utc_now(),
            }
        )

    def add_grid_change(self, entry: Mapping[str, Any]) -> None:
        """Append ``entry`` to the checkpoint's ``grid_history`` (a new snapshot)."""
        with self.locked():
            checkpoint = self.load_locked()
            history = checkpoint.extra.get("grid_history")
            history = list(history) if isinstance(history, list) else []
            checkpoint.extra["grid_history"] = [*history, dict(entry)]
            # Flushed whatever fsync says, as the saved config it goes with is.
            self.replace_locked(checkpoint, durable=True)

    def compact(self) -> Checkpoint:
        """Fold the journal into the snapshot; returns the state written."""
        with self.locked():
            checkpoint = self.load_locked()
            self.replace_locked(checkpoint)
            return checkpoint

    def end_session(self, status_of: Callable[[Checkpoint], ExperimentState]) -> Checkpoint:
        """A session's clean end, in one read and one write: the status ``status_of`` gives
        the newest state, the journal folded in, and the runs recorded since the last clean
        end no longer to be checked at the next start. Returns the state written."""
        with self.locked():
            checkpoint = self.load_locked()
            checkpoint.status = status_of(checkpoint)
            checkpoint.last_updated_at = utc_now()
            self._forget_recorded_since(checkpoint)
            self.replace_locked(checkpoint)
            return checkpoint

    def forget(self, keys: Iterable[RunKey]) -> Checkpoint:
        """Drop ``keys`` from the runs listed (their result files are gone: they run again)
        and note that the runs recorded since the last clean end were checked."""
        with self.locked():
            checkpoint = self.load_locked()
            for key in keys:
                checkpoint.completed_runs.pop(key, None)
            self._forget_recorded_since(checkpoint)
            self.replace_locked(checkpoint)
            return checkpoint

    def _forget_recorded_since(self, checkpoint: Checkpoint) -> None:
        """Stop listing the runs to check after a session dies; without fsync, their files
        are first made durable (os.sync, once), or a power cut could empty files no start
        would check again."""
        if checkpoint.recorded_since_clean_end and not self.fsync:
            os.sync()
        checkpoint.recorded_since_clean_end.clear()

    # -- with the lock held (see locked()) --

    def load_locked(self) -> Checkpoint:
        """:meth:`load`, for a caller that holds the lock."""
        with collector_paused():
            return self._load_locked()

    def _load_locked(self) -> Checkpoint:
        try:
            data = self.checkpoint_path.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"{CHECKPOINT_NAME} does not exist") from None
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            what = "empty" if not data.strip() else "not valid JSON (truncated or garbled)"
            raise CheckpointError(f"{CHECKPOINT_NAME} is {what}") from None
        checkpoint = Checkpoint.from_json(parsed)
        self._snapshot_runs = len(checkpoint.completed_runs)
        self._generation = checkpoint.generation
        self.replay_journal(checkpoint)
        return checkpoint

    def replay_journal(self, checkpoint: Checkpoint, *, runs: bool = True) -> None:
        """Apply the journal's complete, readable records to ``checkpoint``.

        With ``runs=False`` only the experiment's status is taken from it.
        """
        self.skipped_journal_lines = 0
        self.stale_journal_records = 0
        self._journal_stale = False
        journal = read_journal(self.journal_path, checkpoint.generation)
        if journal is None:
            return
        self.skipped_journal_lines = int(journal.torn)
        if journal.stale:
            self.stale_journal_records = len(journal.records)
            self._journal_stale = True
            return
        self.skipped_journal_lines += _replay(checkpoint, journal.records, runs=runs)

    def replace_locked(self, checkpoint: Checkpoint, *, durable: bool = False) -> None:
        """Write ``checkpoint`` as the whole state: a new snapshot (the next generation) and
        a journal that follows it; ``durable``: flushed even when fsync is off."""
        # Past every generation on disk, whatever ``checkpoint`` was built from (a rebuild
        # starts from nothing): a journal left behind can never pass for a newer one.
        # A journal with no records cannot be replayed wrongly: the generation stays (so a
        # rebuild run twice writes the same bytes).
        on_disk = max(self._generation or 0, journal_follows(self.journal_path))
        checkpoint.generation = max(checkpoint.generation, on_disk) + journal_has_records(
            self.journal_path
        )
        self._write_snapshot(checkpoint, durable=durable)
        self._start_journal(checkpoint.generation)

    def _start_journal(self, generation: int) -> None:
        """Empty the journal and name the snapshot generation it follows."""
        self._journal.start(generation, fsync=self.fsync)
        self._generation = generation
        self._journal_stale = False

    # -- internals --

    def _check_journal_follows_snapshot(self) -> None:
        """With the lock held: start the journal anew when it is older than the snapshot
        (read from disk now: another store may have folded it in since our last load)."""
        try:
            parsed = orjson.loads(self.checkpoint_path.read_bytes())
            generation = Checkpoint.from_json(parsed).generation
        except (OSError, orjson.JSONDecodeError, CheckpointError):
            generation = self._generation or 0
        self._generation = generation
        if self.journal_path.exists() and journal_follows(self.journal_path) < generation:
            self._start_journal(generation)
        self._journal_stale = False

    def _write_snapshot(self, checkpoint: Checkpoint, *, durable: bool = False) -> None:
        data = orjson.dumps(checkpoint.to_json())
        write_atomic(self.checkpoint_path, data, fsync=self.fsync or durable)
        self._snapshot_runs = len(checkpoint.completed_runs)

    def _append(self, record: Mapping[str, Any]) -> None:
        line = orjson.dumps(record) + b"\n"
        with self.locked():
            if self._journal_stale or self._generation is None:
                self._check_journal_follows_snapshot()
            size = self._journal.append(
                line, start=self._start_empty_journal, fsync=self.fsync_journal
            )
            if size > max(_COMPACT_MIN_BYTES, _COMPACT_BYTES_PER_RUN * self._snapshot_runs):
                self.replace_locked(self.load_locked())

    def _start_empty_journal(self) -> None:
        # Its first line names the snapshot it follows (a header torn by a kill was cut
        # off before this), as the snapshot on disk says now.
        self._check_journal_follows_snapshot()
        assert self._generation is not None
        if self._journal.size() == 0:  # not already started by the check
            self._start_journal(self._generation)


def _parse_since(raw: Any) -> set[RunKey]:
    """``recorded_since_clean_end`` as written (tolerant: a wrong shape is read as empty)."""
    found: set[RunKey] = set()
    if not isinstance(raw, dict):
        return found
    for tier, subtests in raw.items():
        if not isinstance(subtests, dict):
            continue
        for subtest, runs in subtests.items():
            if isinstance(runs, list):
                found.update(RunKey(tier, subtest, run) for run in runs if type(run) is int)
    return found
