"""``checkpoint.journal``: one JSON record per line, appended; its first line names the
snapshot generation it follows (``{"generation": 3}``), so that a journal older than the
snapshot is never replayed over it. A torn last line (a writer killed mid-append) is never
trusted, and is cut off before the next append.

Only the file's form lives here; what a record means is the checkpoint store's business.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson


@dataclass(frozen=True)
class JournalLines:
    """A journal as read: its complete record lines, and what was left out."""

    records: list[bytes]
    #: The last line had no newline (a torn append): left out.
    torn: bool
    #: Written before the snapshot it was read with: every record is in the snapshot
    #: already, and replaying them would put older states over newer ones.
    stale: bool


def read_journal(path: Path, generation: int) -> JournalLines | None:
    """The journal at ``path``, read against a snapshot of ``generation`` (None: no file)."""
    try:
        journal = path.read_bytes()
    except FileNotFoundError:
        return None
    lines = journal.split(b"\n")
    records = lines[:-1]  # the part after the last newline is a torn append (or empty)
    follows = header_generation(records[0]) if records else None
    if follows is not None:
        records = records[1:]
    return JournalLines(records, torn=bool(lines[-1]), stale=(follows or 0) < generation)


class JournalFile:
    """The journal open for appending, by one store (callers hold the checkpoint's lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        #: The size after this process's last write (-1: none yet).
        self.end = -1

    def close(self) -> None:
        """Close the file, if open."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        return self._fd

    def size(self) -> int:
        """The file's size now."""
        return os.fstat(self._open()).st_size

    def start(self, generation: int, *, fsync: bool) -> None:
        """Empty the journal; its first line names the snapshot ``generation`` it follows."""
        fd = self._open()
        os.ftruncate(fd, 0)
        header = orjson.dumps({"generation": generation}) + b"\n"
        os.write(fd, header)
        self.end = len(header)
        if fsync:
            os.fsync(fd)

    def append(self, line: bytes, *, start: Callable[[], None], fsync: bool) -> int:
        """Append ``line`` (ending in a newline) after cutting any torn tail; ``start`` is
        called first when the journal is empty, to write its first line. Returns the size."""
        fd = self._open()
        size = os.fstat(fd).st_size
        # Unchanged since our last append (which ended in a newline): no torn tail.
        if size and size != self.end and os.pread(fd, 1, size - 1) != b"\n":
            size = cut_torn_tail(fd, size)
        if size == 0:
            start()
            size = self.end
        os.write(fd, line)
        if fsync:
            os.fsync(fd)
        size += len(line)
        self.end = size
        return size


def journal_follows(path: Path) -> int:
    """The generation the journal names in its first line (0: none)."""
    try:
        with open(path, "rb") as journal:
            first = journal.readline()
    except FileNotFoundError:
        return 0
    if not first.endswith(b"\n"):
        return 0
    return header_generation(first[:-1]) or 0


def journal_has_records(path: Path) -> bool:
    """Whether the journal holds more than the line naming its generation."""
    try:
        with open(path, "rb") as journal:
            first = journal.readline()
            rest = journal.read(1)
    except FileNotFoundError:
        return False
    is_header = first.endswith(b"\n") and header_generation(first[:-1]) is not None
    return bool(rest) or (bool(first) and not is_header)


def header_generation(line: bytes) -> int | None:
    """The generation a journal's first line names, or None if it is a record."""
    if not line.startswith(b'{"generation"'):
        return None
    try:
        header = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    generation = header.get("generation") if isinstance(header, dict) else None
    if isinstance(generation, int) and not isinstance(generation, bool) and len(header) == 1:
        return generation
    return None


def cut_torn_tail(fd: int, size: int) -> int:
    """Truncate a journal after its last newline; returns the new size."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            os.ftruncate(fd, keep)
            return keep
        end = start
    os.ftruncate(fd, 0)
    return 0
