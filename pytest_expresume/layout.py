"""Where things live on disk: experiment dirs, the checkpoint's files, saved configs, run dirs,
result files and earlier attempts. Every path rule of the plugin is here."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .atomic_write import TEMP_MARKER, fsync_dir, make_dirs, write_atomic
from .config import ConfigError

if TYPE_CHECKING:
    from .grid import RunKey

CHECKPOINT_NAME = "checkpoint.json"
JOURNAL_NAME = "checkpoint.journal"
LOCK_NAME = "checkpoint.lock"
SESSION_LOCK_NAME = "session.lock"
CONFIG_RELPATH = Path("config") / "experiment.json"
RESULT_FILE_NAME = "run_result.json"
ATTEMPTS_DIR = ".attempts"
#: The UTC start in an experiment dir's name.
_STAMP_FORMAT = "%Y-%m-%dT%H-%M-%S"
_STAMP = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}"
_EXPERIMENT_DIR_NAME = re.compile(f"({_STAMP})-(.+)")


def run_dir_name(run: int) -> str:
    """``run_01``, ``run_10``, ``run_100``: at least two digits."""
    return f"run_{run:02d}"


def run_dir(experiment_dir: Path, key: RunKey) -> Path:
    """``<experiment dir>/<tier>/<subtest>/run_<NN>/``."""
    return experiment_dir.joinpath(key.tier, key.subtest, run_dir_name(key.run))


def result_path(experiment_dir: Path, key: RunKey) -> Path:
    """``<run dir>/run_result.json``."""
    return run_dir(experiment_dir, key) / RESULT_FILE_NAME


#: Where ProjectScylla keeps run dirs besides the experiment dir itself
#: (``completed/<tier>/<subtest>/run_NN/``, ``in_progress/...``). Results are looked for in
#: the experiment dir first, then in these, in this order; this plugin writes only the first.
FOREIGN_RESULT_ROOTS = ("completed", "in_progress")


def result_roots(experiment_dir: Path) -> list[Path]:
    """The dirs whose ``<tier>/<subtest>/run_NN/`` hold result files, in the order they count."""
    return [experiment_dir] + [
        experiment_dir / name for name in FOREIGN_RESULT_ROOTS if (experiment_dir / name).is_dir()
    ]


def experiment_dir_name(started: datetime, experiment_id: str) -> str:
    """``<UTC start, YYYY-MM-DDTHH-MM-SS>-<experiment_id>``."""
    return f"{started.astimezone(timezone.utc).strftime(_STAMP_FORMAT)}-{experiment_id}"


def parse_experiment_dir_name(name: str) -> tuple[str, str] | None:
    """``(started_at as ISO 8601, experiment_id)`` of a dir name, or None for another name."""
    match = _EXPERIMENT_DIR_NAME.fullmatch(name)
    if match is None:
        return None
    started = datetime.strptime(match.group(1), _STAMP_FORMAT).replace(tzinfo=timezone.utc)
    return started.isoformat(), match.group(2)


def new_experiment_dir(results_root: Path, experiment_id: str, started: datetime) -> Path:
    """A path for a new experiment dir that no other experiment uses.

    Two starts in the same second (``--fresh`` right after a run) move the later one on by
    a second, so names stay unique, sortable and in the documented format.
    """
    moment = started
    while True:
        candidate = results_root / experiment_dir_name(moment, experiment_id)
        if not candidate.exists():
            return candidate
        moment += timedelta(seconds=1)


def is_experiment_dir(path: Path) -> bool:
    """A directory holding a checkpoint or a saved config."""
    return (path / CHECKPOINT_NAME).is_file() or (path / CONFIG_RELPATH).is_file()


def find_experiment_dirs(results_root: Path, experiment_id: str) -> list[Path]:
    """This experiment's dirs under the results root, oldest first."""
    if not results_root.is_dir():
        return []
    pattern = re.compile(_STAMP + "-" + re.escape(experiment_id))
    found = [
        entry
        for entry in results_root.iterdir()
        if pattern.fullmatch(entry.name) and entry.is_dir() and is_experiment_dir(entry)
    ]
    return sorted(found, key=lambda p: p.name)


def load_saved_config(experiment_dir: Path) -> dict[str, Any] | None:
    """The saved ``config/experiment.json``, or None when the dir has none (older layouts)."""
    path = experiment_dir / CONFIG_RELPATH
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"saved config {path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"saved config {path} is not a JSON object")
    return value


def save_config(experiment_dir: Path, experiment: dict[str, Any]) -> None:
    """Write ``config/experiment.json`` (indented: people read it), flushed to disk whatever
    ``expresume_fsync`` says: it is written once (and on a grid change), and an experiment
    whose config a power cut emptied could never be resumed."""
    path = experiment_dir / CONFIG_RELPATH
    make_dirs(path.parent, fsync=True)
    write_atomic(path, orjson.dumps(experiment, option=orjson.OPT_INDENT_2), fsync=True)


def prepare_run_dir(experiment_dir: Path, key: RunKey, *, fsync: bool = False) -> Path:
    """Create the run dir; an earlier attempt's dir is first moved to ``.attempts/``.

    ``<tier>/<subtest>/.attempts/run_<NN>-<K>/`` with K = 1, 2, ...: every attempt's logs,
    messages and partial workspaces stay on disk. With ``fsync`` the new run dir's entry
    (and a new tier or subtest dir's) is made durable: its result file, flushed later,
    must not sit in a dir a power cut forgets.
    """
    target = run_dir(experiment_dir, key)
    try:
        target.mkdir()  # the common case: one syscall
    except FileNotFoundError:
        make_dirs(target, fsync=fsync)
        return target
    except FileExistsError:
        _remove_temp_files(target)
        attempts = target.parent / ATTEMPTS_DIR
        attempts.mkdir(exist_ok=True)
        taken = [number for number, _ in _attempt_dirs(experiment_dir, key)]
        target.rename(attempts / f"{run_dir_name(key.run)}-{max(taken, default=0) + 1}")
        target.mkdir()
    if fsync:
        fsync_dir(target.parent)
    return target


def earlier_attempts(experiment_dir: Path, key: RunKey) -> list[Path]:
    """The run's earlier attempts (``.attempts/run_<NN>-<K>/``), newest first."""
    return [path for _, path in sorted(_attempt_dirs(experiment_dir, key), reverse=True)]


def _attempt_dirs(experiment_dir: Path, key: RunKey) -> list[tuple[int, Path]]:
    attempts = run_dir(experiment_dir, key).parent / ATTEMPTS_DIR
    prefix = run_dir_name(key.run) + "-"
    try:
        entries = list(attempts.iterdir())
    except FileNotFoundError:
        return []
    return [
        (int(p.name[len(prefix) :]), p)
        for p in entries
        if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()
    ]


def write_result_file(
    experiment_dir: Path, key: RunKey, result_json: bytes, fields: dict[str, Any], *, fsync: bool
) -> Path:
    """Write ``run_result.json``: the test's result dict, plugin fields under ``expresume``."""
    result = orjson.loads(result_json) if result_json else {}
    result["expresume"] = fields
    path = run_dir(experiment_dir, key) / RESULT_FILE_NAME
    data = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    try:
        write_atomic(path, data, fsync=fsync)
    except FileNotFoundError:
        # The run dir is made by the worker that ran the test; a remote worker's is not here.
        make_dirs(path.parent, fsync=fsync)
        write_atomic(path, data, fsync=fsync)
    return path


def _remove_temp_files(directory: Path) -> None:
    for entry in directory.glob(f".*{TEMP_MARKER}*"):
        if entry.is_file():
            entry.unlink(missing_ok=True)


def remove_stale_temp_files(experiment_dir: Path) -> None:
    """Delete temp files a killed writer left (call holding the session lock).

    Those of the checkpoint and the saved config; a run dir's are removed when the run
    runs again (see :func:`prepare_run_dir`), as a run whose result file was never
    renamed into place always does.
    """
    _remove_temp_files(experiment_dir)
    if (experiment_dir / CONFIG_RELPATH).parent.is_dir():
        _remove_temp_files((experiment_dir / CONFIG_RELPATH).parent)
