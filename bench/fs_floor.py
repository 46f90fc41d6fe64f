"""The filesystem work a recorded run cannot avoid, without pytest or the plugin.

For each run of a 10 x S x 10 grid: make its run dir and write its result file whole
(temp file, rename), then append a line to a journal. ``python fs_floor.py DIR RUNS``;
with ``--fsync``, the flushes the plugin makes with fsync on: the run dir's entry in its
subtest dir (and a new tier or subtest dir's entry, once), the file, and its directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import orjson


def main() -> None:
    root = Path(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    subtests = runs // 100
    fsync = "--fsync" in sys.argv
    root.mkdir(parents=True)
    journal = os.open(root / "journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for tier in range(10):
        for subtest in range(subtests):
            for run in range(1, 11):
                run_dir = root / f"T{tier}" / f"{subtest:03d}" / f"run_{run:02d}"
                new_parents = [p for p in (run_dir.parent.parent, run_dir.parent) if not p.exists()]
                run_dir.mkdir(parents=True)
                if fsync:
                    for made in [*new_parents, run_dir]:
                        _flush_dir(made.parent)
                data = orjson.dumps({"expresume": {"status": "passed", "run": run}})
                temp = run_dir / ".run_result.json.tmp"
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, data)
                if fsync:
                    os.fsync(fd)
                os.close(fd)
                os.replace(temp, run_dir / "run_result.json")
                if fsync:
                    _flush_dir(run_dir)
                os.write(journal, data + b"\n")
    os.close(journal)


def _flush_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


if __name__ == "__main__":
    main()
