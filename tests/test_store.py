"""CheckpointStore: snapshot + journal on disk, across instances and processes."""

from __future__ import annotations

import json
import multiprocessing
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from expresume_testing import journal_records
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_expresume import store as store_module
from pytest_expresume.grid import RunKey
from pytest_expresume.store import (
    CHECKPOINT_NAME,
    JOURNAL_NAME,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
)


def new_checkpoint(directory: Path, **kwargs: Any) -> Checkpoint:
    return Checkpoint(
        experiment_id="test-001",
        experiment_dir=str(directory),
        config_hash="sha256:" + "ab" * 32,
        started_at="2026-01-20T06:50:26+00:00",
        last_updated_at="2026-01-20T06:50:26+00:00",
        **kwargs,
    )


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with CheckpointStore(tmp_path, fsync=False) as opened:
        opened.create(new_checkpoint(tmp_path))
        yield opened


def test_create_load_round_trip(tmp_path: Path) -> None:
    checkpoint = new_checkpoint(
        tmp_path,
        completed_runs={
            RunKey("T0", "00", 1): "passed",
            RunKey("T0", "00", 2): "failed",
            RunKey("T1", "03-x", 10): "error",
            RunKey("T1", "03-x", 100): "skipped",
        },
        status="interrupted",
        extra={"note": {"by": "me"}},
    )
    with CheckpointStore(tmp_path) as store:
        assert not store.exists()
        store.create(checkpoint)
        assert store.exists()
        assert store.load() == checkpoint
    with CheckpointStore(tmp_path) as again:
        assert again.load() == checkpoint


def test_create_leaves_an_existing_checkpoint_alone(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path, fsync=False) as store:
        store.create(new_checkpoint(tmp_path, completed_runs={RunKey("T0", "00", 1): "passed"}))
        store.create(new_checkpoint(tmp_path))
        assert store.load().completed_runs == {RunKey("T0", "00", 1): "passed"}


def test_load_without_checkpoint_is_an_error(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path) as store, pytest.raises(CheckpointError) as info:
        store.load()
    assert CHECKPOINT_NAME in str(info.value)


def test_run_keys_are_strings_on_disk_and_ints_in_memory(tmp_path: Path, store: Any) -> None:
    store.record(RunKey("T0", "00", 1), "passed")
    store.record(RunKey("T0", "00", 12), "failed")
    store.compact()

    on_disk = read_json(tmp_path / CHECKPOINT_NAME)
    assert on_disk["completed_runs"] == {"T0": {"00": {"1": "passed", "12": "failed"}}}
    assert on_disk["version"] == 1

    with CheckpointStore(tmp_path) as reopened:
        loaded = reopened.load()
    assert loaded.completed_runs == {
        RunKey("T0", "00", 1): "passed",
        RunKey("T0", "00", 12): "failed",
    }
    for key in loaded.completed_runs:
        assert isinstance(key, RunKey)
        assert type(key.run) is int
    # Looked up the way resume looks them up: with an int.
    assert loaded.completed_runs[RunKey("T0", "00", 1)] == "passed"
    assert RunKey("T0", "00", "1") not in loaded.completed_runs  # type: ignore[arg-type]


def test_string_run_keys_written_by_hand_load_as_ints(tmp_path: Path) -> None:
    data = new_checkpoint(tmp_path).to_json()
    data["completed_runs"] = {"T0": {"00": {"1": "passed", "07": "error"}}}
    (tmp_path / CHECKPOINT_NAME).write_text(json.dumps(data))
    with CheckpointStore(tmp_path) as store:
        assert store.load().completed_runs == {
            RunKey("T0", "00", 1): "passed",
            RunKey("T0", "00", 7): "error",
        }


def test_unknown_fields_survive_record_and_compact(tmp_path: Path) -> None:
    data = new_checkpoint(tmp_path).to_json()
    data["owner"] = {"team": "evals", "tags": ["a", 1, None]}
    data["note"] = "keep me"
    (tmp_path / CHECKPOINT_NAME).write_text(json.dumps(data))

    with CheckpointStore(tmp_path, fsync=False) as store:
        store.record(RunKey("T0", "00", 1), "passed")
        store.set_status("completed")
        written = store.compact()
    assert written.extra == {"owner": {"team": "evals", "tags": ["a", 1, None]}, "note": "keep me"}

    on_disk = read_json(tmp_path / CHECKPOINT_NAME)
    assert on_disk["owner"] == {"team": "evals", "tags": ["a", 1, None]}
    assert on_disk["note"] == "keep me"
    assert on_disk["completed_runs"] == {"T0": {"00": {"1": "passed"}}}
    assert on_disk["status"] == "completed"

    # And once more, from the compacted file.
    with CheckpointStore(tmp_path, fsync=False) as store:
        store.record(RunKey("T0", "00", 2), "failed")
        store.compact()
    on_disk = read_json(tmp_path / CHECKPOINT_NAME)
    assert on_disk["note"] == "keep me"
    assert on_disk["completed_runs"] == {"T0": {"00": {"1": "passed", "2": "failed"}}}


def scylla_checkpoint(directory: Path) -> dict[str, Any]:
    """A checkpoint of the older ProjectScylla layout, version "2.0"."""
    return {
        "version": "2.0",
        "experiment_id": "test-001",
        "experiment_dir": str(directory),
        "config_hash": "0123456789abcdef",
        "completed_runs": {
            "T0": {"00-empty": {"1": "passed", "2": "failed"}},
            "T1": {"01-tools": {"1": "passed"}},
        },
        "started_at": "2026-01-20T06:50:26.123456+00:00",
        "last_updated_at": "2026-01-20T07:17:17.654321+00:00",
        "status": "running",
        "rate_limit_source": "judge",
        "rate_limit_until": None,
        "pause_count": 3,
        "pid": 41234,
    }


def test_scylla_checkpoint_loads(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_NAME).write_text(json.dumps(scylla_checkpoint(tmp_path), indent=2))
    with CheckpointStore(tmp_path) as store:
        loaded = store.load()
    assert loaded.experiment_id == "test-001"
    assert loaded.config_hash == "0123456789abcdef"
    assert loaded.status == "running"
    assert loaded.started_at == "2026-01-20T06:50:26.123456+00:00"
    assert loaded.completed_runs == {
        RunKey("T0", "00-empty", 1): "passed",
        RunKey("T0", "00-empty", 2): "failed",
        RunKey("T1", "01-tools", 1): "passed",
    }
    assert loaded.extra == {
        "rate_limit_source": "judge",
        "rate_limit_until": None,
        "pause_count": 3,
        "pid": 41234,
    }


def test_scylla_checkpoint_extras_survive_compaction(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_NAME).write_text(json.dumps(scylla_checkpoint(tmp_path), indent=2))
    with CheckpointStore(tmp_path, fsync=False) as store:
        store.record(RunKey("T1", "01-tools", 2), "error")
        store.compact()
    on_disk = read_json(tmp_path / CHECKPOINT_NAME)
    assert on_disk["version"] == 1
    assert on_disk["rate_limit_source"] == "judge"
    assert "rate_limit_until" in on_disk
    assert on_disk["rate_limit_until"] is None
    assert on_disk["pause_count"] == 3
    assert on_disk["pid"] == 41234
    assert on_disk["config_hash"] == "0123456789abcdef"
    assert on_disk["completed_runs"] == {
        "T0": {"00-empty": {"1": "passed", "2": "failed"}},
        "T1": {"01-tools": {"1": "passed", "2": "error"}},
    }
    with CheckpointStore(tmp_path) as store:
        assert store.load().extra["pause_count"] == 3


@pytest.mark.parametrize(
    "data",
    [
        [1, 2],
        {"version": 7, "experiment_id": "x", "config_hash": "h"},
        {"version": 1, "config_hash": "h"},
        {"version": 1, "experiment_id": "x", "config_hash": "h", "completed_runs": []},
        {
            "version": 1,
            "experiment_id": "x",
            "config_hash": "h",
            "completed_runs": {"T0": {"00": {"one": "passed"}}},
        },
        {
            "version": 1,
            "experiment_id": "x",
            "config_hash": "h",
            "completed_runs": {"T0": {"00": {"1": ["passed"]}}},
        },
        {
            "version": 1,
            "experiment_id": "x",
            "config_hash": "h",
            "completed_runs": {"T0": {"00": {"1": None}}},
        },
    ],
)
def test_malformed_checkpoints_are_checkpoint_errors(tmp_path: Path, data: Any) -> None:
    (tmp_path / CHECKPOINT_NAME).write_text(json.dumps(data))
    with CheckpointStore(tmp_path) as store, pytest.raises(CheckpointError):
        store.load()


def test_truncated_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    text = json.dumps(new_checkpoint(tmp_path).to_json())
    (tmp_path / CHECKPOINT_NAME).write_text(text[: len(text) // 2])
    with CheckpointStore(tmp_path) as store, pytest.raises(CheckpointError) as info:
        store.load()
    assert "not valid JSON" in str(info.value)


def test_torn_last_journal_line(tmp_path: Path, store: Any) -> None:
    store.record(RunKey("T0", "00", 1), "passed")
    store.record(RunKey("T0", "00", 2), "failed")
    journal = tmp_path / JOURNAL_NAME
    intact = journal.read_bytes()
    with journal.open("ab") as handle:
        handle.write(b'{"tier": "T0", "subtest": "00", "run": 3, "sta')

    with CheckpointStore(tmp_path, fsync=False) as reader:
        loaded = reader.load()
        assert reader.skipped_journal_lines == 1
    assert loaded.completed_runs == {
        RunKey("T0", "00", 1): "passed",
        RunKey("T0", "00", 2): "failed",
    }

    with CheckpointStore(tmp_path, fsync=False) as writer:
        writer.record(RunKey("T0", "00", 3), "skipped")
    data = journal.read_bytes()
    assert data.startswith(intact)
    assert json.loads(data[len(intact) :])["run"] == 3
    assert b'"sta{' not in data
    assert data.endswith(b"\n")
    lines = journal_records(tmp_path)
    assert data.splitlines()[0] == b'{"generation":0}'  # the snapshot it follows
    assert len(lines) == 3
    assert [json.loads(line)["run"] for line in lines] == [1, 2, 3]

    with CheckpointStore(tmp_path, fsync=False) as reader:
        assert reader.load().completed_runs == {
            RunKey("T0", "00", 1): "passed",
            RunKey("T0", "00", 2): "failed",
            RunKey("T0", "00", 3): "skipped",
        }
        assert reader.skipped_journal_lines == 0


def test_torn_line_in_an_otherwise_empty_journal(tmp_path: Path, store: Any) -> None:
    (tmp_path / JOURNAL_NAME).write_bytes(b"\x00\x00\x00garbage")
    assert store.load().completed_runs == {}
    store.record(RunKey("T0", "01", 1), "passed")
    # The torn bytes are cut; the journal starts anew with its generation, then the record.
    assert (tmp_path / JOURNAL_NAME).read_bytes().count(b"\n") == 2
    assert len(journal_records(tmp_path)) == 1
    assert store.load().completed_runs == {RunKey("T0", "01", 1): "passed"}


def test_foreign_journal_lines_are_skipped(tmp_path: Path, store: Any) -> None:
    store.record(RunKey("T0", "00", 1), "passed")
    with (tmp_path / JOURNAL_NAME).open("ab") as handle:
        handle.write(b"not json\n")
        handle.write(b'{"tier": "T0", "subtest": "00", "run": "2", "status": "passed"}\n')
        handle.write(b'{"tier": "T0", "subtest": "00", "run": 3, "status": "great"}\n')
        handle.write(b"[1, 2]\n")
    store.record(RunKey("T0", "00", 4), "failed")
    loaded = store.load()
    assert loaded.completed_runs == {
        RunKey("T0", "00", 1): "passed",
        RunKey("T0", "00", 4): "failed",
    }
    assert store.skipped_journal_lines == 4


def test_compaction_folds_the_journal(tmp_path: Path, store: Any) -> None:
    keys = [RunKey("T0", "00", 1), RunKey("T0", "01", 1), RunKey("T1", "00", 2)]
    for key in keys:
        store.record(key, "passed")
    store.record(keys[0], "error")
    store.set_status("interrupted", at="2026-01-20T07:00:00+00:00")
    journal = tmp_path / JOURNAL_NAME
    assert journal.stat().st_size > 0

    written = store.compact()
    assert journal_records(tmp_path) == []
    assert journal.read_bytes() == b'{"generation":1}\n'  # it follows the new snapshot
    on_disk = read_json(tmp_path / CHECKPOINT_NAME)
    assert on_disk["completed_runs"] == {
        "T0": {"00": {"1": "error"}, "01": {"1": "passed"}},
        "T1": {"00": {"2": "passed"}},
    }
    assert on_disk["status"] == "interrupted"
    assert on_disk["last_updated_at"] == "2026-01-20T07:00:00+00:00"
    assert written.completed_runs == {
        keys[0]: "error",
        keys[1]: "passed",
        keys[2]: "passed",
    }
    # The snapshot alone now holds it all.
    journal.unlink()
    with CheckpointStore(tmp_path) as reader:
        assert reader.load() == written


def test_set_status(tmp_path: Path, store: Any) -> None:
    assert store.load().status == "running"
    store.set_status("interrupted")
    assert store.load().status == "interrupted"
    store.record(RunKey("T0", "00", 1), "passed", at="2026-02-01T00:00:00+00:00")
    assert store.load().status == "interrupted"
    assert store.load().last_updated_at == "2026-02-01T00:00:00+00:00"
    store.set_status("completed")
    store.compact()
    assert read_json(tmp_path / CHECKPOINT_NAME)["status"] == "completed"
    with CheckpointStore(tmp_path) as reader:
        assert reader.load().status == "completed"


def test_counts(store: Any) -> None:
    store.record(RunKey("T0", "00", 1), "passed")
    store.record(RunKey("T0", "00", 2), "passed")
    store.record(RunKey("T0", "00", 3), "error")
    assert store.load().counts() == {"passed": 2, "failed": 0, "error": 1, "skipped": 0}


def test_journal_is_compacted_when_it_grows(tmp_path: Path, store: Any) -> None:
    with mock.patch.object(store_module, "_COMPACT_MIN_BYTES", 500):
        for run in range(1, 41):
            store.record(RunKey("T0", "00", run), "passed")
    on_disk = read_json(tmp_path / CHECKPOINT_NAME)
    in_snapshot = len(on_disk["completed_runs"].get("T0", {}).get("00", {}))
    in_journal = len(journal_records(tmp_path))
    assert in_snapshot >= 6
    assert in_snapshot + in_journal == 40
    with CheckpointStore(tmp_path) as reader:
        assert len(reader.load().completed_runs) == 40


# -- the model property ----------------------------------------------------------------------

run_keys = st.builds(
    RunKey,
    st.sampled_from(["T0", "T1"]),
    st.sampled_from(["00", "01"]),
    st.integers(min_value=1, max_value=3),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("record"), run_keys, st.sampled_from(store_module.RUN_STATUSES)),
        st.tuples(st.just("set_status"), st.sampled_from(store_module.EXPERIMENT_STATES)),
        st.tuples(st.just("compact")),
        st.tuples(
            st.just("torn"), st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b)
        ),
        st.tuples(st.just("reopen")),
    ),
    max_size=40,
)


@settings(max_examples=120, deadline=None)
@given(ops=operations, small_journal=st.booleans())
def test_load_equals_everything_acknowledged(
    ops: list[tuple[Any, ...]], small_journal: bool
) -> None:
    threshold = 300 if small_journal else store_module._COMPACT_MIN_BYTES
    with (
        tempfile.TemporaryDirectory() as name,
        mock.patch.object(store_module, "_COMPACT_MIN_BYTES", threshold),
    ):
        directory = Path(name)
        model_runs: dict[RunKey, str] = {}
        model_status = "running"
        store = CheckpointStore(directory, fsync=False)
        try:
            store.create(new_checkpoint(directory))
            for op in ops:
                if op[0] == "record":
                    store.record(op[1], op[2])
                    model_runs[op[1]] = op[2]
                elif op[0] == "set_status":
                    store.set_status(op[1])
                    model_status = op[1]
                elif op[0] == "compact":
                    store.compact()
                elif op[0] == "torn":
                    with (directory / JOURNAL_NAME).open("ab") as handle:
                        handle.write(op[1])
                else:
                    store.close()
                    store = CheckpointStore(directory, fsync=False)
                loaded = store.load()
                assert loaded.completed_runs == model_runs
                assert loaded.status == model_status
        finally:
            store.close()
        with CheckpointStore(directory) as fresh:
            loaded = fresh.load()
        assert loaded.completed_runs == model_runs
        assert loaded.status == model_status
        assert loaded.experiment_id == "test-001"


# -- several processes -----------------------------------------------------------------------


def _record_runs(directory: str, tier: str, count: int, threshold: int) -> None:
    store_module._COMPACT_MIN_BYTES = threshold
    with CheckpointStore(Path(directory), fsync=False) as store:
        for run in range(1, count + 1):
            store.record(RunKey(tier, "00", run), "passed" if run % 3 else "failed")


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


@pytest.mark.skipif(sys.platform == "win32", reason="fork-based, POSIX locks")
@pytest.mark.parametrize("threshold", [1 << 20, 400], ids=["journal", "compacting"])
def test_processes_recording_at_once_lose_nothing(tmp_path: Path, threshold: int) -> None:
    with CheckpointStore(tmp_path, fsync=False) as store:
        store.create(new_checkpoint(tmp_path))
    context = _context()
    tiers = ["T0", "T1", "T2", "T3"]
    processes = [
        context.Process(target=_record_runs, args=(str(tmp_path), tier, 50, threshold))
        for tier in tiers
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]

    with CheckpointStore(tmp_path) as store:
        loaded = store.load()
        assert store.skipped_journal_lines == 0
    expected = {
        RunKey(tier, "00", run): "passed" if run % 3 else "failed"
        for tier in tiers
        for run in range(1, 51)
    }
    assert len(loaded.completed_runs) == 200
    assert loaded.completed_runs == expected
    with CheckpointStore(tmp_path) as store:
        store.compact()
    assert (
        sum(
            len(runs)
            for tier in read_json(tmp_path / CHECKPOINT_NAME)["completed_runs"].values()
            for runs in tier.values()
        )
        == 200
    )


# -- generations: a journal older than the snapshot is never replayed over it -----------------


def test_a_journal_older_than_the_snapshot_is_not_replayed(tmp_path: Path, store: Any) -> None:
    """A power cut after a compaction flushed the snapshot, before the journal's truncation
    reached the disk: the old journal ('running' over 'completed') must not win."""
    store.set_status("running")
    store.record(RunKey("T0", "00", 1), "passed")
    store.record(RunKey("T0", "00", 2), "error")
    store.record(RunKey("T0", "00", 2), "passed")
    store.set_status("completed", at="2026-03-01T00:00:00+00:00")
    old_journal = (tmp_path / JOURNAL_NAME).read_bytes()
    store.compact()
    # ...and the journal as it was before the compaction comes back, minus its last line.
    (tmp_path / JOURNAL_NAME).write_bytes(old_journal.rsplit(b"\n", 2)[0] + b"\n")

    with CheckpointStore(tmp_path, fsync=False) as reader:
        loaded = reader.load()
        assert reader.stale_journal_records == 4  # running, and three run records
    assert loaded.status == "completed"
    assert loaded.completed_runs == {
        RunKey("T0", "00", 1): "passed",
        RunKey("T0", "00", 2): "passed",
    }
    # The next append starts the journal anew, after the snapshot: nothing is lost.
    with CheckpointStore(tmp_path, fsync=False) as writer:
        writer.load()
        writer.record(RunKey("T0", "01", 1), "failed")
    assert (tmp_path / JOURNAL_NAME).read_bytes().startswith(b'{"generation":1}\n')
    assert len(journal_records(tmp_path)) == 1
    with CheckpointStore(tmp_path, fsync=False) as reader:
        again = reader.load()
    assert again.status == "completed"
    assert again.completed_runs[RunKey("T0", "01", 1)] == "failed"
    assert len(again.completed_runs) == 3


def test_a_journal_newer_than_the_snapshot_is_replayed(tmp_path: Path, store: Any) -> None:
    """With fsync off a cut may lose the new snapshot and keep the journal started after it:
    its records are newer than the old snapshot, so they are applied."""
    store.record(RunKey("T0", "00", 1), "passed")
    old_snapshot = (tmp_path / CHECKPOINT_NAME).read_bytes()
    store.compact()
    store.record(RunKey("T0", "00", 2), "failed")
    (tmp_path / CHECKPOINT_NAME).write_bytes(old_snapshot)
    with CheckpointStore(tmp_path, fsync=False) as reader:
        loaded = reader.load()
        assert reader.stale_journal_records == 0
    # Run 1 went with the lost snapshot (its result file brings it back on the next start).
    assert loaded.completed_runs == {RunKey("T0", "00", 2): "failed"}


def test_a_store_that_loaded_before_another_compacted_appends_where_it_counts(
    tmp_path: Path, store: Any
) -> None:
    store.record(RunKey("T0", "00", 1), "passed")
    with CheckpointStore(tmp_path, fsync=False) as other:
        other.load()
        store.compact()  # the other store's view of the generation is now old
        other.record(RunKey("T0", "00", 2), "passed")
    with CheckpointStore(tmp_path, fsync=False) as reader:
        assert reader.load().completed_runs == {
            RunKey("T0", "00", 1): "passed",
            RunKey("T0", "00", 2): "passed",
        }


def test_compacting_an_empty_journal_keeps_the_generation(tmp_path: Path, store: Any) -> None:
    store.record(RunKey("T0", "00", 1), "passed")
    assert store.compact().generation == 1
    assert store.compact().generation == 1  # nothing to fold in: same bytes as before
    store.record(RunKey("T0", "00", 2), "passed")
    assert store.compact().generation == 2


def test_an_upgraded_checkpoint_with_an_older_tools_status_reads_back(tmp_path: Path) -> None:
    """A "3.1" run status of Scylla's own (agent_complete) is kept on upgrade to version 1,
    so version 1 must read it back: a string status not ours is kept, not done."""
    older = {
        "version": "3.1",
        "experiment_id": "x",
        "config_hash": "h",
        "completed_runs": {"T0": {"00": {"1": "passed", "2": "agent_complete"}}},
        "run_states": {"T0": {"00": {"1": "worktree_cleaned", "2": "agent_complete"}}},
    }
    (tmp_path / CHECKPOINT_NAME).write_text(json.dumps(older))
    with CheckpointStore(tmp_path, fsync=False) as store:
        store.compact()
    upgraded = read_json(tmp_path / CHECKPOINT_NAME)
    assert upgraded["version"] == 1
    assert upgraded["completed_runs"] == {"T0": {"00": {"1": "passed", "2": "agent_complete"}}}
    with CheckpointStore(tmp_path) as reader:
        loaded = reader.load()
    assert loaded.completed_runs == {RunKey("T0", "00", 1): "passed"}
    assert loaded.foreign_runs == {("T0", "00", "2"): "agent_complete"}
    assert loaded.extra["run_states"] == older["run_states"]


def test_an_empty_journal_is_started_after_the_snapshot_on_disk_not_a_stale_view(
    tmp_path: Path, store: Any
) -> None:
    """A store that loaded long ago finds the journal emptied (another store compacted and
    was killed before writing the journal's first line): its record must not be filed
    under an old generation and skipped."""
    store.record(RunKey("T0", "00", 1), "passed")
    with CheckpointStore(tmp_path, fsync=False) as stale_view:
        stale_view.load()  # generation 0
        store.record(RunKey("T0", "00", 2), "passed")
        store.compact()
        store.record(RunKey("T0", "00", 3), "passed")
        store.compact()  # generation 2
        (tmp_path / JOURNAL_NAME).write_bytes(b"")  # killed between truncate and header
        stale_view.record(RunKey("T0", "00", 4), "passed")
    with CheckpointStore(tmp_path, fsync=False) as reader:
        loaded = reader.load()
        assert reader.stale_journal_records == 0
    assert sorted(k.run for k in loaded.completed_runs) == [1, 2, 3, 4]


@pytest.mark.parametrize("fsync", [True, False])
def test_the_runs_to_check_are_forgotten_only_once_their_files_are_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    """Without fsync, a clean end (or a start that checked them) syncs before it stops
    listing the runs a dead session would have to check; with fsync they are on disk."""
    synced: list[bool] = []
    monkeypatch.setattr(store_module.os, "sync", lambda: synced.append(True))
    with CheckpointStore(tmp_path, fsync=fsync) as writer:
        writer.create(new_checkpoint(tmp_path))
        writer.record(RunKey("T0", "00", 1), "passed")
        assert writer.load().recorded_since_clean_end == {RunKey("T0", "00", 1)}
        ended = writer.end_session(lambda checkpoint: "completed")
    assert ended.recorded_since_clean_end == set()
    assert synced == ([] if fsync else [True])
    with CheckpointStore(tmp_path, fsync=fsync) as again:
        again.end_session(lambda checkpoint: "completed")  # nothing listed: no sync
    assert synced == ([] if fsync else [True])


def test_a_run_recorded_after_its_file_was_flushed_is_not_listed_for_the_check(
    tmp_path: Path,
) -> None:
    """The start after a dead session reads back only files that may not be on disk: a
    record made after its file was flushed (fsync on) says so, and survives compaction
    and a reload without being listed; an unflushed record of the same run is forgotten
    once a flushed one follows it."""
    flushed, unflushed, both = (RunKey("T0", "00", n) for n in (1, 2, 3))
    with CheckpointStore(tmp_path, fsync=False) as store:
        store.create(new_checkpoint(tmp_path))
        store.record(flushed, "passed", flushed=True)
        store.record(unflushed, "passed")
        store.record(both, "error")
        store.record(both, "passed", flushed=True)
        assert store.load().recorded_since_clean_end == {unflushed}
        store.compact()
    with CheckpointStore(tmp_path, fsync=False) as reader:
        loaded = reader.load()
    assert loaded.recorded_since_clean_end == {unflushed}
    assert loaded.completed_runs == {flushed: "passed", unflushed: "passed", both: "passed"}
