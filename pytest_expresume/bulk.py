"""Building large acyclic structures (a checkpoint's runs, a check over every result file)
without the cyclic garbage collector scanning the whole heap again and again."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a bulk build of acyclic objects.

    Parsing 100,000 runs allocates some 500,000 tuples, strings and dicts; each allocation
    burst makes CPython run collections whose cost grows with everything pytest already
    holds (100,000 items), which at that size cost more than the parsing itself. Nothing
    built here forms a cycle, so nothing is left for the collector to find; reference
    counting frees the rest as usual. The collector runs again on the way out if it ran
    before (a caller that paused it keeps it paused).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
