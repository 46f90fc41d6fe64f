"""Steps inside a run: each step's value saved as it finishes, and an earlier attempt's
finished steps reused (as a prefix) when the run runs again.

Pure logic over files, free of pytest: the run context calls it, tests call it directly.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .atomic_write import make_dirs, write_atomic
from .grid import RunKey
from .layout import earlier_attempts
from .values import Conversion, encode_result

STEPS_DIR = "steps"
STEP_NAME = re.compile(r"[A-Za-z0-9._-]+")
#: ``<run dir>/steps/@order``: the names of finished steps, one per line, in order ("@" is
#: in no step name, so no step can collide with it).
STEP_ORDER_NAME = "@order"


class StepError(ValueError):
    """A step used wrongly: a bad name, or one name twice in one attempt."""


class StepNotSaved(OSError):
    """A finished step's value could not be written (disk full, EIO, a read-only mount):
    the run is an error, and the session starts no further run (each would be paid for
    and lost the same way)."""

    def __init__(self, name: str, path: Path, exc: OSError) -> None:
        super().__init__(exc.errno, exc.strerror or str(exc), exc.filename or str(path))
        self.step = name


@dataclass(frozen=True)
class StepRecord:
    """One step of an attempt, as ``expresume.steps`` lists it."""

    reused: bool
    duration_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"reused": self.reused, "duration_seconds": round(self.duration_seconds, 6)}


def check_step_name(name: object) -> str:
    """``name`` if it is a valid step name (``[A-Za-z0-9._-]+``, not ``.`` or ``..``)."""
    if not isinstance(name, str) or not STEP_NAME.fullmatch(name) or name in (".", ".."):
        raise StepError(f"step name {name!r} is not valid: use letters, digits, '.', '_', '-'")
    if name.endswith(".json"):
        # Its directory would be another step's value file (steps/x.json).
        raise StepError(f"step name {name!r} is not valid: it may not end in '.json'")
    return name


def step_value_path(run_dir: Path, name: str) -> Path:
    """``<run dir>/steps/<name>.json``: the step's saved value."""
    return run_dir / STEPS_DIR / f"{name}.json"


def step_files_dir(run_dir: Path, name: str) -> Path:
    """``<run dir>/steps/<name>/``: the step's own files."""
    return run_dir / STEPS_DIR / name


def finished_steps(run_dir: Path) -> list[str]:
    """Names of the steps with a saved value in ``run_dir``, in the order they finished."""
    try:
        order = (run_dir / STEPS_DIR / STEP_ORDER_NAME).read_bytes().decode(errors="replace")
    except OSError:
        return []
    # The last line may be torn (a kill during the append): it names no finished step.
    names = order.split("\n")[:-1]
    seen: dict[str, None] = {}
    for name in names:
        if STEP_NAME.fullmatch(name) and step_value_path(run_dir, name).is_file():
            seen.pop(name, None)
            seen[name] = None
    return list(seen)


def _note_finished(run_dir: Path, name: str) -> None:
    # An append, after the value is in place: the order of finished steps, which file
    # times cannot give (two quick steps share a timestamp).
    with open(run_dir / STEPS_DIR / STEP_ORDER_NAME, "ab") as order:
        order.write(f"{name}\n".encode())


def reusable_attempt(experiment_dir: Path, key: RunKey) -> Path | None:
    """The run's newest earlier attempt that reached a step: the one whose finished steps
    a new attempt reuses (an attempt killed before its first step is passed over)."""
    for attempt in earlier_attempts(experiment_dir, key):
        if (attempt / STEPS_DIR).is_dir():
            return attempt
    return None


class StepBook:
    """The steps of one attempt of a run.

    ``earlier`` is the run dir of the attempt whose finished steps may be reused (the
    newest earlier attempt that reached a step), or None. Reuse is a prefix: once a step
    runs in this attempt, every later step runs too, since its input may have changed.
    """

    def __init__(
        self,
        run_dir: Path,
        earlier: Path | None,
        *,
        from_step: str | None = None,
        until_step: str | None = None,
        fsync: bool = True,
    ) -> None:
        self.run_dir = run_dir
        self.earlier = earlier
        self.from_step = from_step
        self.until_step = until_step
        self.fsync = fsync
        #: The steps this attempt called, in order.
        self.called: dict[str, StepRecord] = {}
        #: Values that had to be converted to be saved, per step.
        self.conversions: list[Conversion] = []
        #: A step ran in this attempt (not reused): every later one runs too.
        self._running = False
        #: The step after which this attempt stopped (``--until-step``), if it did.
        self.stopped_after: str | None = None
        #: Steps this attempt ran before a rate-limit retry (reused after it, but paid here).
        self._ran_here: dict[str, StepRecord] = {}

    def restart(self) -> None:
        """The attempt's call runs again in place (after a rate-limit pause): the steps it
        finished are in this run dir, and may be reused like an earlier attempt's."""
        self.earlier = self.run_dir
        # What this attempt paid for stays said so; --from-step was honoured already.
        self._ran_here.update({n: r for n, r in self.called.items() if not r.reused})
        self.from_step = None
        self.called = {}
        self.conversions = []
        self._running = False
        self.stopped_after = None

    def step_dir(self, name: str) -> Path:
        """The step's directory in this attempt's run dir, created."""
        path = step_files_dir(self.run_dir, check_step_name(name))
        make_dirs(path, fsync=False)
        return path

    def run(
        self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        """The step's value: reused from the earlier attempt when it may be, else ``fn``'s."""
        check_step_name(name)
        if name in self.called:
            raise StepError(f"step {name!r} was already called in this run")
        if name == self.from_step:
            self._running = True
        started = time.perf_counter()
        if not self._running:
            found, value = self._reuse(name)
            if found:
                self.called[name] = self._ran_here.get(name) or StepRecord(
                    True, time.perf_counter() - started
                )
                return value
        self._running = True
        self.called[name] = StepRecord(False, 0.0)  # a step that raises was still called
        value = fn(*args, **kwargs)
        encoded = encode_result(value)
        for conversion in encoded.conversions:
            self.conversions.append(
                Conversion(
                    f"{name}.{conversion.path}" if conversion.path else name,
                    conversion.was,
                    conversion.saved_as,
                )
            )
        path = step_value_path(self.run_dir, name)
        try:
            make_dirs(path.parent, fsync=self.fsync)
            write_atomic(path, encoded.data, fsync=self.fsync)
            _note_finished(self.run_dir, name)
        except OSError as exc:
            raise StepNotSaved(name, path, exc) from exc
        self.called[name] = StepRecord(False, time.perf_counter() - started)
        return value

    def stops_after(self, name: str) -> bool:
        """Whether the run stops after this step (``--until-step``)."""
        return name == self.until_step

    def to_json(self) -> dict[str, Any]:
        """``expresume.steps`` of the result file."""
        return {name: record.to_json() for name, record in self.called.items()}

    def _reuse(self, name: str) -> tuple[bool, Any]:
        if self.earlier is None:
            return False, None
        source = step_value_path(self.earlier, name)
        try:
            data = source.read_bytes()
            value = orjson.loads(data)
        except (OSError, orjson.JSONDecodeError):
            return False, None  # never finished (or not whole): the step runs
        if self.earlier != self.run_dir:
            try:
                self._copy_finished(name, data)
            except OSError as exc:
                raise StepNotSaved(name, step_value_path(self.run_dir, name), exc) from exc
        return True, value

    def _copy_finished(self, name: str, data: bytes) -> None:
        assert self.earlier is not None
        files = step_files_dir(self.earlier, name)
        if files.is_dir():
            # Copied, not linked: a later step writing into them must not change the
            # earlier attempt's files, which stay as they were.
            shutil.copytree(files, step_files_dir(self.run_dir, name), dirs_exist_ok=True)
        target = step_value_path(self.run_dir, name)
        make_dirs(target.parent, fsync=self.fsync)
        write_atomic(target, data, fsync=self.fsync)
        _note_finished(self.run_dir, name)
