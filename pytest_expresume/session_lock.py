"""One session per experiment: a lock held for the whole session, naming its holder.

The OS releases the lock when the holder dies (even by kill -9), so a dead session never
blocks anyone and no ``--unlock`` is needed.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import IO, Any

import orjson
import portalocker

from .clock import utc_now
from .layout import SESSION_LOCK_NAME

#: How long a session waits for a lock held by someone else before calling it busy.
_SHARED_PROBE_GRACE = 0.5


class ExperimentBusy(Exception):
    """Another session holds the experiment; ``holder`` says who (pid, host, since)."""

    def __init__(self, experiment_dir: Path, holder: dict[str, Any]) -> None:
        self.holder = holder
        super().__init__(
            f"{experiment_dir} is in use by another pytest session ({describe_holder(holder)}): "
            "wait for it to finish or stop it (a session that died does not hold it)"
        )


def describe_holder(holder: dict[str, Any]) -> str:
    """``pid 123 on host h since 2026-...``, from what the holder wrote."""
    if not holder:
        return "holder unknown"
    return (
        f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
        f"since {holder.get('since', '?')}"
    )


def read_holder(experiment_dir: Path) -> dict[str, Any]:
    """What the session holding the experiment wrote about itself (empty: nothing)."""
    return _read_holder(experiment_dir / SESSION_LOCK_NAME)


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


class SessionLock:
    """The lock a session running or rebuilding an experiment holds until it ends."""

    def __init__(self, experiment_dir: Path) -> None:
        self.experiment_dir = experiment_dir
        self.path = experiment_dir / SESSION_LOCK_NAME
        self._file: IO[bytes] | None = None
        #: What this process wrote into the lock file (pid, host, since) while it holds it.
        self.holder: dict[str, Any] = {}

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock without waiting; raises ExperimentBusy when another session has it."""
        if self._file is not None:
            return
        handle = open(self.path, "a+b")  # noqa: SIM115 - held for the session
        deadline = time.monotonic() + _SHARED_PROBE_GRACE
        while True:
            try:
                portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
                break
            except portalocker.LockException:
                # A status check holds the lock shared for an instant (lock_is_held): only
                # a lock still held after the grace period is another session's.
                if time.monotonic() >= deadline:
                    handle.close()
                    raise ExperimentBusy(self.experiment_dir, _read_holder(self.path)) from None
                time.sleep(0.02)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}
        handle.truncate(0)
        handle.write(orjson.dumps(holder))
        handle.flush()
        self._file = handle
        self.holder = holder

    def release(self) -> None:
        """Clear the holder's note and let go."""
        if self._file is None:
            return
        self._file.truncate(0)
        self._file.flush()
        portalocker.unlock(self._file)
        self._file.close()
        self._file = None
        self.holder = {}


def lock_is_held(experiment_dir: Path) -> bool:
    """Whether a live process holds the experiment's session lock (nothing is written)."""
    try:
        handle = open(experiment_dir / SESSION_LOCK_NAME, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with handle:
        try:
            # A shared lock conflicts with the holder's exclusive one and changes nothing.
            portalocker.lock(handle, portalocker.LOCK_SH | portalocker.LOCK_NB)
        except portalocker.LockException:
            return True
        portalocker.unlock(handle)
        return False


def running_session(experiment_dir: Path) -> dict[str, Any] | None:
    """Who runs this experiment now (empty: a holder that has not yet written its note),
    or None when nobody holds the session lock."""
    if not lock_is_held(experiment_dir):
        return None
    return read_holder(experiment_dir)


def dead_session(experiment_dir: Path) -> dict[str, Any] | None:
    """The note of a session that died holding the experiment (None: none did).

    A session that ends clears its note; the OS releases the lock of one that dies, so a
    note under a free lock is a dead session's.
    """
    if lock_is_held(experiment_dir):
        return None
    holder = read_holder(experiment_dir)
    return holder or None
