"""Before the first run: can the plugin create, read and write every path it will need?

A session that finds out at its first result file that the disk is read-only has already
paid for a run it cannot keep. Each probe does what the session will do (create a dir,
create a file, open one for reading or writing) and undoes it, so a refusal leaves nothing
behind. Pure of pytest: a failure is a :class:`~pytest_expresume.config.ConfigError`
naming the path and the OS's reason.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .config import ConfigError
from .layout import CHECKPOINT_NAME, CONFIG_RELPATH, JOURNAL_NAME, LOCK_NAME, SESSION_LOCK_NAME


def describe_os_error(exc: OSError, doing: str) -> str:
    """``cannot <doing>: <path>: <the OS's reason>``, one line."""
    reason = exc.strerror or str(exc)
    where = f"{exc.filename}: " if exc.filename else ""
    return f"cannot {doing}: {where}{reason}"


def probe_new_experiment_dir(experiment_dir: Path) -> None:
    """The experiment dir (and the results root above it) can be created."""
    existing = experiment_dir.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"cannot create the experiment dir {experiment_dir}: {existing} is in the way "
            "(it is not a directory)"
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".expresume-probe-", dir=existing))
    except OSError as exc:
        if exc.filename is not None:
            exc.filename = str(existing)  # the probe's own name means nothing to the user
        raise ConfigError(
            describe_os_error(exc, f"create the experiment dir {experiment_dir}")
        ) from None


def probe_experiment_dir(experiment_dir: Path) -> None:
    """An existing experiment dir can be read and written: the files a session reads are
    readable, the files it appends to are writable, and new files can be made in it."""
    if not experiment_dir.is_dir():
        raise ConfigError(f"the experiment dir {experiment_dir} is not a directory")
    try:
        for relpath in (CONFIG_RELPATH, CHECKPOINT_NAME):
            path = experiment_dir / relpath
            if path.exists():
                with open(path, "rb"):
                    pass
        for name in (JOURNAL_NAME, LOCK_NAME, SESSION_LOCK_NAME):
            path = experiment_dir / name
            if path.exists():
                with open(path, "r+b"):  # opened for writing, nothing written
                    pass
        handle, probe = tempfile.mkstemp(prefix=".expresume-probe-", dir=experiment_dir)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        if exc.filename is not None and ".expresume-probe-" in str(exc.filename):
            exc.filename = str(experiment_dir)
        raise ConfigError(describe_os_error(exc, "use the experiment dir")) from None
