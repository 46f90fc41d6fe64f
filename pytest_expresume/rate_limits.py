"""Rate limits and systematic failures: the experiment-wide pause, and the stop that every
process running tests honours without the recording process's help.

Both live as small files in the experiment dir, so xdist workers (even after their
controller died) see them before they start a run: a worker that hits a rate limit pauses
everyone, and a session that must stop (``--max-errors``) stops every worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson

from .atomic_write import write_atomic

PAUSE_NAME = "rate_limit_pause.json"
STOP_NAME = "session_stop.json"


class RateLimited(Exception):
    """Raise it in a run when a provider says "too many requests": the experiment pauses
    for ``retry_after`` seconds, then the run is tried again in the same session (its
    finished steps reused). The attempt is not recorded."""

    def __init__(self, retry_after: float, source: str = "unknown") -> None:
        super().__init__(f"rate limited by {source}: retry after {retry_after:g} s")
        self.retry_after = float(retry_after)
        self.source = source


@dataclass(frozen=True)
class Pause:
    """An experiment-wide pause: no run starts before ``until`` (seconds since the epoch)."""

    until: float
    source: str

    @property
    def until_iso(self) -> str:
        """``until`` as ISO 8601 UTC, to the second."""
        moment = datetime.fromtimestamp(self.until, timezone.utc)
        return moment.isoformat(timespec="seconds")


def current_pause(experiment_dir: Path) -> Pause | None:
    """The pause on file (ended or not), or None (none, or a file that cannot be read)."""
    try:
        data = orjson.loads((experiment_dir / PAUSE_NAME).read_bytes())
        return Pause(float(data["until"]), str(data["source"]))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def announce_pause(experiment_dir: Path, seconds: float, source: str, now: float) -> Pause:
    """Pause the experiment until ``now + seconds``; a pause on file that ends later wins."""
    pause = Pause(now + seconds, source)
    existing = current_pause(experiment_dir)
    if existing is not None and existing.until >= pause.until:
        return existing
    write_atomic(
        experiment_dir / PAUSE_NAME,
        orjson.dumps({"until": pause.until, "until_iso": pause.until_iso, "source": source}),
        fsync=False,  # lost to a power cut, the pause is only shorter: the provider says again
    )
    return pause


def wait_out_pause(
    experiment_dir: Path,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Sleep until no pause on file is running (another process may lengthen it while this
    one waits); returns the seconds slept."""
    slept = 0.0
    while True:
        pause = current_pause(experiment_dir)
        left = 0.0 if pause is None else pause.until - clock()
        if left <= 0:
            return slept
        step = min(left, 1.0)  # wake to see a longer pause another worker announced
        sleep(step)
        slept += step


def clear_session_files(experiment_dir: Path) -> None:
    """Remove the pause and stop files of an earlier session (a new session starts free)."""
    for name in (PAUSE_NAME, STOP_NAME):
        (experiment_dir / name).unlink(missing_ok=True)


def request_stop(experiment_dir: Path, message: str) -> None:
    """Ask every process running this session's tests to start no further run."""
    write_atomic(experiment_dir / STOP_NAME, orjson.dumps({"message": message}), fsync=False)


def stop_requested(experiment_dir: Path) -> str | None:
    """The stop message on file, or None."""
    try:
        data = orjson.loads((experiment_dir / STOP_NAME).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    message = data.get("message") if isinstance(data, dict) else None
    return str(message) if message else "expresume: the session was asked to stop"
