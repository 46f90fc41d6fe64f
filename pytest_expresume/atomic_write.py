"""Whole-or-absent file writes: temp file, fsync, rename."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

TEMP_MARKER = ".tmp-"
_sequence = itertools.count()


def write_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    With ``fsync`` the data and the rename survive a power loss too.
    """
    while True:
        # Unique per process and call; a dead process with our pid may have left one.
        temp = path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}-{next(_sequence)}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            continue
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path, *, fsync: bool) -> None:
    """Create ``directory`` and any missing parents; with ``fsync`` each new entry is made
    durable in its parent (a flushed file in a dir whose own entry was lost is lost too)."""
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:
            if not new.is_dir():
                raise
            # Made by another process just now, which may not have flushed it yet.
        if fsync:
            fsync_dir(new.parent)
