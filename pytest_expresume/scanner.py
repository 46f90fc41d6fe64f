"""Reading result files back: the filesystem is the database.

Only ``<root>/<tier>/<subtest>/run_<N>/run_result.json`` counts, where the root is the
experiment dir, or ProjectScylla's ``completed/`` and ``in_progress/`` inside it (a run
found in several counts from the first); workspaces may hold anything, including other
``run_result.json`` files deeper down, and ``.attempts/`` keeps earlier attempts out of
the way.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .bulk import collector_paused
from .config import NAME_PATTERN
from .grid import RunKey
from .layout import RESULT_FILE_NAME, result_roots, run_dir, run_dir_name
from .statuses import RUN_STATUSES, RunStatus

_RUN_DIR = re.compile(r"run_0*([1-9]\d*)")

#: A status for a result file that has none of its own (the hook
#: ``pytest_expresume_result_status``); None when it does not know.
ResultStatus = Callable[[dict[str, Any], Path], str | None]


@dataclass(frozen=True)
class ResultFile:
    """What one result file says."""

    status: RunStatus
    finished_at: str | None


@dataclass
class ScanReport:
    """Every usable result file by run key, and every unusable one with the reason."""

    found: dict[RunKey, ResultFile] = field(default_factory=dict)
    problems: list[tuple[Path, str]] = field(default_factory=list)


class UnusableResult(Exception):
    """A result file that gives no status; the message says why."""


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _read_bytes(path: str, root: Path) -> bytes | None:
    """A result file's bytes (None: absent). A symlink is followed only inside ``root``."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise UnusableResult(f"cannot be read: {exc.strerror}") from None
        if not Path(path).resolve().is_relative_to(root):
            raise UnusableResult(
                "a symlink pointing outside the experiment dir (not followed)"
            ) from None
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as inner:
            raise UnusableResult(f"cannot be read: {inner.strerror}") from None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError as exc:  # e.g. a directory named run_result.json
        raise UnusableResult(f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _status_of(data: bytes, path: str, result_status: ResultStatus | None) -> ResultFile:
    """What ``data`` (read from ``path``) says; the path becomes a Path only for the hook."""
    return _status_of_result(_parse_result(data), path, result_status)


def _parse_result(data: bytes) -> dict[str, Any]:
    try:
        result = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UnusableResult("not valid JSON (truncated or garbled)") from None
    if not isinstance(result, dict):
        raise UnusableResult(f"holds a JSON {type(result).__name__}, not an object")
    return result


def _status_of_result(
    result: dict[str, Any], path: str, result_status: ResultStatus | None
) -> ResultFile:
    own = result.get("expresume")
    finished_at = None
    if isinstance(own, dict):
        at = own.get("finished_at")
        finished_at = at if isinstance(at, str) else None
        if own.get("status") in RUN_STATUSES:
            return ResultFile(own["status"], finished_at)
    if result_status is not None:
        try:
            answer = result_status(result, Path(path))
        except Exception as exc:
            raise UnusableResult(f"pytest_expresume_result_status raised {exc!r}") from None
        if answer is not None:
            if answer not in RUN_STATUSES:
                raise UnusableResult(
                    f"pytest_expresume_result_status gave {answer!r}, "
                    f"not one of {', '.join(RUN_STATUSES)}"
                )
            return ResultFile(answer, finished_at)
    judged = result.get("judge_passed")
    if isinstance(judged, bool):
        return ResultFile("passed" if judged else "failed", finished_at)
    if isinstance(own, dict) and "status" in own:
        raise UnusableResult(
            f"gives no status (expresume.status {own['status']!r} is not one of "
            f"{', '.join(RUN_STATUSES)}, and no hook answer or judge_passed)"
        )
    raise UnusableResult("gives no status (no expresume.status, hook answer or judge_passed)")


def read_result_file(
    path: Path, experiment_dir: Path, result_status: ResultStatus | None = None
) -> ResultFile:
    """The status a result file gives: ``expresume.status``, else the hook, else
    ``judge_passed``. Raises UnusableResult with the reason otherwise."""
    data = _read_bytes(str(path), experiment_dir.resolve())
    if data is None:
        raise UnusableResult("does not exist")
    return _status_of(data, str(path), result_status)


def scan_result_files(
    experiment_dir: Path, result_status: ResultStatus | None = None
) -> ScanReport:
    """Read every ``<tier>/<subtest>/run_<N>/run_result.json`` under the experiment dir (and
    under ``completed/`` and ``in_progress/``, for runs not found before)."""
    report = ScanReport()
    for key, _, _, found in iter_result_files(experiment_dir, result_status, report.problems):
        report.found[key] = found
    return report


def iter_result_files(
    experiment_dir: Path,
    result_status: ResultStatus | None = None,
    problems: list[tuple[Path, str]] | None = None,
) -> Iterator[tuple[RunKey, str, dict[str, Any], ResultFile]]:
    """Each usable result file of the current attempts, one at a time: its run key, path,
    content and status (what :func:`scan_result_files` keeps, without holding them all).
    Unusable files are appended to ``problems`` with the reason."""
    report = ScanReport(problems=problems if problems is not None else [])
    root = experiment_dir.resolve()
    seen: set[RunKey] = set()
    for layout_root in result_roots(experiment_dir):
        yield from _walk_root(str(layout_root), root, seen, report, result_status)


def _walk_root(
    directory: str,
    root: Path,
    seen: set[RunKey],
    report: ScanReport,
    result_status: ResultStatus | None,
) -> Iterator[tuple[RunKey, str, dict[str, Any], ResultFile]]:
    earlier = set(seen)
    for tier, tier_path in _subdirs(directory, report):
        for subtest, subtest_path in _subdirs(tier_path, report):
            for run_name, run_path in _subdirs(subtest_path, report):
                match = _RUN_DIR.fullmatch(run_name)
                if match is None:
                    continue
                key = RunKey(tier, subtest, int(match.group(1)))
                if key in earlier:
                    continue  # the experiment dir's own file (or completed/'s) counts
                path = os.path.join(run_path, RESULT_FILE_NAME)
                try:
                    data = _read_bytes(path, root)
                    if data is None:
                        continue  # a run in flight, or one that never finished
                    canonical = run_dir_name(key.run)
                    if run_name != canonical and os.path.exists(
                        os.path.join(subtest_path, canonical, RESULT_FILE_NAME)
                    ):
                        raise UnusableResult(
                            f"a second result for run {key.run}: {canonical} is used"
                        )
                    result = _parse_result(data)
                    found = _status_of_result(result, path, result_status)
                except UnusableResult as exc:
                    report.problems.append((Path(path), str(exc)))
                    continue
                seen.add(key)
                yield key, path, result, found


def _subdirs(directory: str, report: ScanReport) -> list[tuple[str, str]]:
    """Sub-directories (name, path) that can be layout names; symlinked ones are listed,
    not followed."""
    found: list[tuple[str, str]] = []
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        report.problems.append((Path(directory), f"cannot be listed: {exc.strerror}"))
        return found
    for entry in entries:
        # Names may start with a dot (".x" is a valid tier name); ".attempts" never matches
        # run_<N> at the run level, so earlier attempts stay out.
        if not NAME_PATTERN.fullmatch(entry.name) or entry.name in (".", ".."):
            continue
        if entry.is_symlink():
            if entry.is_dir():
                report.problems.append((Path(entry.path), "a symlinked directory (not followed)"))
            continue
        if entry.is_dir(follow_symlinks=False):
            found.append((entry.name, entry.path))
    return found


def unrecorded_results(
    experiment_dir: Path,
    keys: Iterable[RunKey],
    completed: Mapping[RunKey, str],
    rerun: frozenset[str],
    result_status: ResultStatus | None = None,
) -> dict[RunKey, RunStatus]:
    """Runs about to run again whose result file says something the checkpoint does not.

    A run that finished just before a kill -9 has its result file but no checkpoint record
    (the file is written first). Only runs that would run are looked at: one ``stat`` each.
    """
    found: dict[RunKey, RunStatus] = {}
    reader = _ResultReader(experiment_dir, result_status)
    for key in keys:
        status = completed.get(key)
        if status is not None and status not in rerun:
            continue
        result = reader.first_usable(key)
        if result is not None and result.status != status:
            found[key] = result.status
    return found


class _ResultReader:
    """Reads run result files, only from inside the experiment dir (paths as strings: this
    runs once per run to check, up to every run of a grid)."""

    def __init__(self, experiment_dir: Path, result_status: ResultStatus | None) -> None:
        self.root = experiment_dir.resolve()
        self.roots = [str(root) for root in result_roots(experiment_dir)]
        self.result_status = result_status
        #: Per subtest dir: whether it resolves inside the experiment dir, and the names of
        #: its entries that are symlinks (None: it cannot be listed). One listing per
        #: subtest and one ``realpath`` per tier, not an ``lstat`` and a ``realpath`` per run.
        self._subtests: dict[str, tuple[bool, frozenset[str] | None]] = {}
        #: The same per tier dir.
        self._tiers: dict[str, tuple[bool, frozenset[str] | None]] = {}

    def first_usable(self, key: RunKey) -> ResultFile | None:
        """The run's result, from the first layout root that has a usable one."""
        for root in self.roots:
            found = self.usable(root, key)
            if found is not None:
                return found
        return None

    def usable(self, root: str, key: RunKey) -> ResultFile | None:
        """The result file under ``root``, or None: absent, unusable, or reached through a
        symlinked dir that points out of the experiment dir (not this experiment's file)."""
        # Joined by hand: os.path.join costs more than the read at 100,000 runs; the roots
        # are str(Path) (no trailing separator) and names never hold one.
        tier = f"{root}/{key.tier}"
        subtest = f"{tier}/{key.subtest}"
        run_name = run_dir_name(key.run)
        path = f"{subtest}/{run_name}/{RESULT_FILE_NAME}"
        try:
            data = _read_bytes(path, self.root)
            if data is None or not self._inside_root(tier, key.subtest, subtest, run_name):
                return None
            return _status_of(data, path, self.result_status)
        except UnusableResult:
            return None  # runs again; its dir moves to .attempts/ with the bad file

    def _inside_root(self, tier: str, subtest_name: str, subtest: str, run_name: str) -> bool:
        """Whether the subtest dir resolves inside the experiment dir and the run dir in it
        is not a symlink."""
        state = self._subtests.get(subtest)
        if state is None:
            state = self._subtests[subtest] = self._subtest_state(tier, subtest_name, subtest)
        inside, links = state
        if not inside:
            return False
        if links is None:
            return not os.path.islink(f"{subtest}/{run_name}")
        return run_name not in links

    def _subtest_state(
        self, tier: str, subtest_name: str, subtest: str
    ) -> tuple[bool, frozenset[str] | None]:
        tier_state = self._tiers.get(tier)
        if tier_state is None:
            inside = Path(os.path.realpath(tier)).is_relative_to(self.root)
            tier_state = self._tiers[tier] = (inside, _symlinks_in(tier))
        tier_inside, tier_links = tier_state
        if not tier_inside:
            return False, None
        # Only a symlinked subtest dir (or one in a tier that cannot be listed) can lead
        # out of a tier that is inside.
        if (tier_links is None or subtest_name in tier_links) and not Path(
            os.path.realpath(subtest)
        ).is_relative_to(self.root):
            return False, None
        return True, _symlinks_in(subtest)


def _symlinks_in(directory: str) -> frozenset[str] | None:
    """Names of the entries of ``directory`` that are symlinks (None: it cannot be listed)."""
    try:
        with os.scandir(directory) as listing:
            return frozenset(entry.name for entry in listing if entry.is_symlink())
    except OSError:
        return None


def interrupted_runs(experiment_dir: Path, keys: Iterable[RunKey]) -> set[RunKey]:
    """Runs that were in flight when a session died: a run dir and no result file.

    Only ``keys`` (the runs about to run) are looked at: one ``stat``, two for these.
    """
    found: set[RunKey] = set()
    for key in keys:
        directory = run_dir(experiment_dir, key)
        if directory.is_dir() and not (directory / RESULT_FILE_NAME).exists():
            found.add(key)
    return found


def unwhole_results(
    experiment_dir: Path, keys: Iterable[RunKey], result_status: ResultStatus | None = None
) -> set[RunKey]:
    """Runs among ``keys`` with no whole, readable result file (missing, empty, garbled).

    After a session that died, the index may list a run whose file a power cut emptied (with
    ``expresume_fsync`` off the kernel may write the index first): such a run is not done.
    """
    reader = _ResultReader(experiment_dir, result_status)
    with collector_paused():
        return {key for key in keys if reader.first_usable(key) is None}
