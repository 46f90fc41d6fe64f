"""A run's call that hit a rate limit: pause the experiment, then say whether the call is
to run again in place (or whether the pauses went on too long, and the session stops)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from .grid import RunKey
from .rate_limits import Pause, RateLimited, announce_pause, request_stop, wait_out_pause
from .run_context import RunContext
from .snapshot import ExperimentSnapshot
from .store import CheckpointStore

#: In-place retries of one run's call after rate limits, at most (whatever the pauses).
MAX_RATE_LIMIT_RETRIES = 30


class RateLimitRetry:
    """The rate-limit pauses of the runs one process runs, and their limits."""

    def __init__(
        self,
        config: pytest.Config,
        snapshot: ExperimentSnapshot,
        *,
        say: Callable[[str], None],
        stop_session: Callable[[str], None],
    ) -> None:
        self.config = config
        self.snapshot = snapshot
        self._say = say
        self._stop_session = stop_session
        #: Seconds each run (by node id) has been paused for rate limits, and how often.
        self._paused: dict[str, float] = {}
        self._retries: dict[str, int] = {}
        #: The checkpoint, for a pause's fields (opened at the first pause).
        self._store: CheckpointStore | None = None

    def close(self) -> None:
        """Release the checkpoint, if a pause opened it."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def pause_before_retry(
        self,
        nodeid: str,
        key: RunKey,
        exc: BaseException,
        context: RunContext | None,
        before_call: dict[str, Any],
    ) -> bool:
        """Whether ``exc`` is a rate limit within the limits: if so, the experiment was
        paused (every process waits), ``context`` is set back to where the call started
        (its finished steps kept for reuse), and the call is to run again."""
        if isinstance(exc, RateLimited):
            seconds: float | None = exc.retry_after
            source = exc.source
        elif isinstance(exc, Exception):
            seconds = self.config.hook.pytest_expresume_rate_limit(config=self.config, exc=exc)
            source = type(exc).__name__
        else:
            return False  # KeyboardInterrupt, pytest's own outcomes: never a rate limit
        if seconds is None:
            return False
        # Each pause lasts at least a second, and the retries are capped: a provider that
        # says "retry after 0" forever must not run the call forever.
        seconds = max(1.0, float(seconds))
        paused = self._paused.get(nodeid, 0.0) + seconds
        self._paused[nodeid] = paused
        retries = self._retries.get(nodeid, 0) + 1
        self._retries[nodeid] = retries
        limit = self.snapshot.max_pause
        if paused > limit or retries > MAX_RATE_LIMIT_RETRIES:
            why = (
                f"for {paused:g} s in all, longer than expresume_max_pause ({limit:g} s)"
                if paused > limit
                else f"{retries} times, more than {MAX_RATE_LIMIT_RETRIES}"
            )
            self._give_up(
                f"expresume: {key.test_id} was rate-limited by {source} {why}: recorded "
                "error, and the session stops (resume later)"
            )
            return False
        self._pause(key, seconds, source)
        if context is not None:
            context.result.clear()
            context.result.update(before_call)
            if context.steps is not None:
                context.steps.restart()
        return True

    def _give_up(self, message: str) -> None:
        self._stop_session(message)
        if self.snapshot.writes_results:
            with contextlib.suppress(OSError):  # this process stops either way
                request_stop(self.snapshot.experiment_dir, message)

    def _pause(self, key: RunKey, seconds: float, source: str) -> None:
        now = time.time()
        store = self._pause_store()
        if store is not None:
            pause = announce_pause(self.snapshot.experiment_dir, seconds, source, now)
            store.note_pause(pause.until_iso, pause.source)
        else:
            # A remote worker (the experiment dir is not here): it pauses alone.
            pause = Pause(now + seconds, source)
        self._say(
            f"expresume: {key.test_id} was rate-limited by {source}: the experiment pauses "
            f"until {pause.until_iso} ({seconds:g} s), then the run goes on"
        )
        # Until the later of this pause and any on file (another worker's may be longer).
        while time.time() < now + seconds:
            time.sleep(min(1.0, now + seconds - time.time()))
        if store is not None:
            wait_out_pause(self.snapshot.experiment_dir)
            store.set_status("running")

    def _pause_store(self) -> CheckpointStore | None:
        if not self.snapshot.writes_results:
            return None  # a remote worker: the experiment dir is not here
        if self._store is None:
            self._store = CheckpointStore(
                self.snapshot.experiment_dir, fsync=False, fsync_journal=False
            )
        return self._store
