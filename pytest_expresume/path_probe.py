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
from collections.abc import Iterable
from pathlib import Path

from .config import ConfigError
from .layout import (
    CHECKPOINT_NAME,
    CONFIG_RELPATH,
    JOURNAL_NAME,
    LOCK_NAME,
    SESSION_LOCK_NAME,
)


def describe_os_error(exc: OSError, doing: str) -> str:
    """``cannot <doing>: <path>: <the OS's reason>``, one line."""
    reason = exc.strerror or str(exc)
    where = f"{exc.filename}: " if exc.filename else ""
    return f"cannot {doing}: {where}{reason}"


def probe_new_experiment_dir(experiment_dir: Path) -> None:
    """The experiment dir (and the results root above it) can be created."""
    first_missing = experiment_dir
    while not first_missing.parent.exists() and first_missing.parent != first_missing:
        first_missing = first_missing.parent
    existing = first_missing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"cannot create the experiment dir {experiment_dir}: {existing} is in the way "
            "(it is not a directory)"
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".expresume-probe-", dir=existing))
    except OSError as exc:
        # The probe's own name means nothing to the user. Name the dir the session would
        # fail to create, as mkdir does: its parent may exist and still refuse new entries
        # for a reason that is about the new name (/proc/nope: No such file or directory).
        exc.filename = None if first_missing == experiment_dir else str(first_missing)
        raise ConfigError(
            describe_os_error(exc, f"create the experiment dir {experiment_dir}")
        ) from None


def probe_experiment_dir(experiment_dir: Path, tiers: Iterable[str] = ()) -> None:
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
    try:
        _probe_layout_dirs(experiment_dir, tiers)
    except OSError as exc:
        raise ConfigError(describe_os_error(exc, "use the experiment dir")) from None


#: Access a session needs to a tier or subtest dir it resumes in: list it (an earlier
#: attempt is looked for), create run dirs in it, and move an earlier attempt aside.
_LAYOUT_ACCESS = os.R_OK | os.W_OK | os.X_OK


def _probe_layout_dirs(experiment_dir: Path, tiers: Iterable[str]) -> None:
    """The existing dirs of the grid's tiers, their subtest dirs and the saved config's
    dir can be listed and written in (other dirs there are the user's business).

    A ``sudo`` session leaves them root's own, and the next session would find out at a
    run's set-up, after paying for the runs before it. ``os.access`` costs one syscall a
    dir and creates nothing: a grid has thousands of subtest dirs. Missing dirs need no
    check, they are made under one checked here. ProjectScylla's ``completed/`` and
    ``in_progress/`` are only read, so only the experiment dir's own layout counts;
    ``config/`` is checked too: a grid change rewrites the saved config.
    """
    for name in (*tiers, CONFIG_RELPATH.parts[0]):
        tier = experiment_dir / name
        if not tier.is_dir():
            continue  # made when needed, under the experiment dir checked above
        _check_access(tier)
        for subtest in _child_dirs(tier):
            _check_access(subtest)


def _child_dirs(directory: Path) -> list[Path]:
    # Dot names are the plugin's own (.attempts, temp files, probes): checked as used.
    with os.scandir(directory) as listing:
        return [Path(e.path) for e in listing if not e.name.startswith(".") and e.is_dir()]


def _check_access(directory: Path) -> None:
    if os.access(directory, _LAYOUT_ACCESS):
        return
    # os.access says no but not why: do what a session does and let the OS give its
    # reason (EACCES, EROFS). Paid only for the dir that fails.
    with os.scandir(directory):
        pass
    try:
        handle, probe = tempfile.mkstemp(prefix=".expresume-probe-", dir=directory)
    except OSError as exc:
        exc.filename = str(directory)
        raise
    # Allowed after all (os.access asks with the real, not the effective uid): no refusal.
    os.close(handle)
    os.unlink(probe)
