"""The clock: UTC moments as the plugin writes them into files and file names."""

from __future__ import annotations

from datetime import datetime, timezone

#: ``checkpoint.json.bak-<stamp>`` and ``checkpoint.json.corrupt-<stamp>``.
FILE_STAMP_FORMAT = "%Y%m%dT%H%M%S"


def utc_now() -> str:
    """The current UTC time as ISO 8601 with seconds, e.g. ``2026-01-20T06:50:26+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_stamp() -> str:
    """The current UTC time for a file name, e.g. ``20260120T065026``."""
    return datetime.now(timezone.utc).strftime(FILE_STAMP_FORMAT)
