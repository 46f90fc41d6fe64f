"""A grid that grows or shrinks in the same experiment: what changed, said in runs.

Pure of pytest. The grid keys (``tiers``, ``subtests``, ``max_subtests``,
``runs_per_subtest``) are the work asked for, not the experiment's identity: a session that
gives other grid keys than the saved config continues the same experiment dir; the finished
runs stay done, the new ones run, and the change is saved and kept in ``grid_history``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .config import ConfigError, render_value, with_grid
from .grid import RunKey

#: The order in which a change is told: the widest first.
_TOLD_IN_ORDER = (
    ("tiers", "tiers_to_run"),
    ("subtests",),
    ("max_subtests",),
    ("runs_per_subtest",),
)

#: The grid of a config (subtests from the hook where the config has none).
GridOf = Callable[[Mapping[str, Any]], Collection[RunKey]]


@dataclass(frozen=True)
class GridChange:
    """The saved config's grid keys and the ones given now, which replace them."""

    before: Mapping[str, Any]
    after: Mapping[str, Any]

    def history_entry(self, at: str) -> dict[str, Any]:
        """The entry appended to the checkpoint's ``grid_history``."""
        return {"at": at, "before": dict(self.before), "after": dict(self.after)}


def _value(grid: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in grid:
            return grid[name]
    return None


def _tiers_told(before: Any, after: Any) -> str:
    if isinstance(before, list) and isinstance(after, list):
        added = [f"+{t}" for t in after if t not in before]
        removed = [f"-{t}" for t in before if t not in after]
        if added or removed:
            return " ".join(added + removed)
        return f"tiers reordered {render_value(after)}"
    return f"tiers {render_value(before)} -> {render_value(after)}"


def describe_grid_change(saved: Mapping[str, Any], change: GridChange, grid_of: GridOf) -> str:
    """``+T1 (+9 runs), runs_per_subtest 3 -> 5 (+24 runs)``: each changed key in turn, with
    the runs it adds or removes (a key whose count cannot be told alone shows none)."""
    parts: list[str] = []
    current = dict(saved)
    size: int | None = _size(current, grid_of)
    for names in _TOLD_IN_ORDER:
        before = _value(change.before, names)
        after = _value(change.after, names)
        if before == after:
            continue
        step = {k: v for k, v in current.items() if k not in names}
        step.update({k: change.after[k] for k in names if k in change.after})
        current = step
        new_size = _size(current, grid_of)
        if names[0] == "tiers":
            told = _tiers_told(before, after)
        else:
            told = f"{names[0]} {render_value(before) if before is not None else '(none)'} -> "
            told += render_value(after) if after is not None else "(none)"
        if size is not None and new_size is not None and new_size != size:
            told += f" ({new_size - size:+d} runs)"
        parts.append(told)
        size = new_size
    return ", ".join(parts)


def _size(experiment: Mapping[str, Any], grid_of: GridOf) -> int | None:
    try:
        return len(grid_of(experiment))
    except ConfigError:  # a mix of old and new keys that does not make a grid on its own
        return None


def saved_with_grid(saved: Mapping[str, Any], change: GridChange) -> dict[str, Any]:
    """The saved config as it is written back: its own values, the grid given now."""
    return with_grid(saved, change.after)
