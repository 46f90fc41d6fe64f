"""A grid that grows or shrinks in the same experiment: what changed, said in runs.

Pure of pytest. The grid keys (``tiers``, ``subtests``, ``max_subtests``,
``runs_per_subtest``) are the work asked for, not the experiment's identity: a session that
gives other grid keys than the saved config continues the same experiment dir; the finished
runs stay done, the new ones run, and the change is saved and kept in ``grid_history``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .config import ConfigError, render_value, with_grid
from .grid import Grid, RunKey

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


def _replaced(
    grid: Mapping[str, Any], names: tuple[str, ...], source: Mapping[str, Any]
) -> dict[str, Any]:
    """``grid`` with the setting ``names`` taken from ``source`` (absent there, absent here)."""
    step = {k: v for k, v in grid.items() if k not in names}
    step.update({k: source[k] for k in names if k in source})
    return step


#: How many names a change lists before it says how many more there are.
_NAMES_SHOWN = 6


def _listed(signed: list[str]) -> str:
    if len(signed) <= _NAMES_SHOWN:
        return " ".join(signed)
    return " ".join(signed[:_NAMES_SHOWN]) + f" and {len(signed) - _NAMES_SHOWN} more"


def _runs(delta: int | None) -> str:
    return f" ({delta:+d} runs)" if delta else ""


def _entry(subtests: Any, tier: str) -> Any:
    """A tier's own subtests: its mapping entry, the one list, or None (the hook's)."""
    if isinstance(subtests, Mapping):
        return subtests.get(tier)
    return subtests


def _subtests_across(tiers_before: Any, tiers_after: Any, before: Any, after: Any) -> Any:
    """The subtests while only the tiers have changed. A mapping's entry belongs to its tier:
    a tier added comes with its own entry, a tier dropped takes its entry along (else the
    step between would name a tier that is not there, or leave one without subtests). One
    list for every tier stays as it is: a new tier takes it, as the old grid would have."""
    if not isinstance(before, Mapping) and not isinstance(after, Mapping):
        return before
    if not isinstance(tiers_before, list) or not isinstance(tiers_after, list):
        return before
    across: dict[str, Any] = {}
    for tier in tiers_after:
        entry = _entry(before if tier in tiers_before else after, tier)
        if entry is not None:
            across[tier] = entry
    return across


def _names_told(before: Any, after: Any) -> str:
    """``+02 +03 -00``, ``reordered``, or both values when either is not a list."""
    if isinstance(before, list) and isinstance(after, list):
        old, new = set(before), set(after)
        signed = [f"+{n}" for n in after if n not in old] + [
            f"-{n}" for n in before if n not in new
        ]
        return _listed(signed) if signed else f"reordered {render_value(after)}"
    old_text = render_value(before) if before is not None else "(none)"
    return f"{old_text} -> {render_value(after) if after is not None else '(none)'}"


@dataclass
class _Told:
    """The parts told so far and whether each one's runs could be counted."""

    parts: list[str]
    counted: int = 0
    uncounted: bool = False

    def add(self, text: str, delta: int | None) -> None:
        if delta is None:
            self.uncounted = True
        else:
            self.counted += delta
        self.parts.append(text + _runs(delta))


def describe_grid_change(saved: Mapping[str, Any], change: GridChange, grid_of: GridOf) -> str:
    """``+T1 (+9 runs), runs_per_subtest 3 -> 5 (+24 runs)``: each changed setting in turn,
    widest first, with the runs it adds or removes to the grid as the settings before it
    left it; a per-tier ``subtests`` mapping is told per tier (``T0 subtests +02 (+3
    runs)``). The total is the difference of the grids before and after, and is said on its
    own (``; +8 runs in all``) whenever the parts do not add up to it."""
    told = _Told([])
    current = with_grid(saved, change.before)
    counts = _tier_counts(current, grid_of)
    total = _difference(counts, _tier_counts(with_grid(saved, change.after), grid_of))
    tiers_names = _TOLD_IN_ORDER[0]
    tiers_before = _value(current, tiers_names)
    tiers_after = _value(change.after, tiers_names)
    for names in _TOLD_IN_ORDER:
        before = _value(current, names)
        after = _value(change.after, names)
        if before == after:
            continue
        step = _replaced(current, names, change.after)
        if names == tiers_names:
            across = _subtests_across(
                tiers_before, tiers_after, current.get("subtests"), change.after.get("subtests")
            )
            step.pop("subtests", None)
            if across is not None:
                step["subtests"] = across
        step_counts = _tier_counts(step, grid_of)
        if names == tiers_names:
            _tell_tiers(told, before, after, counts, step_counts)
        elif names == ("subtests",) and (isinstance(before, Mapping) or isinstance(after, Mapping)):
            _tell_subtests_per_tier(told, step, before, after, counts, step_counts)
        elif names == ("subtests",):
            told.add(f"subtests {_names_told(before, after)}", _difference(counts, step_counts))
        else:
            old = render_value(before) if before is not None else "(none)"
            new = render_value(after) if after is not None else "(none)"
            told.add(f"{names[0]} {old} -> {new}", _difference(counts, step_counts))
        current, counts = step, step_counts
    if total is not None and (told.uncounted or told.counted != total):
        # A step between that makes no grid of its own (subtests from a hook that does not
        # know a tier yet) cannot be counted: the whole change still can.
        whole = f"{total:+d} runs in all"
        return f"{', '.join(told.parts)}; {whole}" if told.parts else whole
    return ", ".join(told.parts)


def _tell_tiers(
    told: _Told,
    before: Any,
    after: Any,
    counts: Mapping[str, int] | None,
    step_counts: Mapping[str, int] | None,
) -> None:
    if not isinstance(before, list) or not isinstance(after, list):
        text = f"tiers {render_value(before)} -> {render_value(after)}"
        told.add(text, _difference(counts, step_counts))
        return
    added = [t for t in after if t not in before]
    removed = [t for t in before if t not in after]
    if not added and not removed:
        told.add(f"tiers reordered {render_value(after)}", 0)
        return
    if added:
        gained = None if step_counts is None else sum(step_counts.get(t, 0) for t in added)
        told.add(_listed([f"+{t}" for t in added]), gained)
    if removed:
        lost = None if counts is None else -sum(counts.get(t, 0) for t in removed)
        told.add(_listed([f"-{t}" for t in removed]), lost)


def _tell_subtests_per_tier(
    told: _Told,
    step: Mapping[str, Any],
    before: Any,
    after: Any,
    counts: Mapping[str, int] | None,
    step_counts: Mapping[str, int] | None,
) -> None:
    tiers = _value(step, _TOLD_IN_ORDER[0])
    for tier in tiers if isinstance(tiers, list) else ():
        old, new = _entry(before, tier), _entry(after, tier)
        if old == new:
            continue
        delta = None
        if counts is not None and step_counts is not None:
            delta = step_counts.get(tier, 0) - counts.get(tier, 0)
        told.add(f"{tier} subtests {_names_told(old, new)}", delta)


def _difference(before: Mapping[str, int] | None, after: Mapping[str, int] | None) -> int | None:
    if before is None or after is None:
        return None
    return sum(after.values()) - sum(before.values())


def _tier_counts(experiment: Mapping[str, Any], grid_of: GridOf) -> dict[str, int] | None:
    """Runs per tier of a config's grid, or None when the config makes no grid."""
    try:
        grid = grid_of(experiment)
    except ConfigError:  # e.g. a hook that knows no subtests for a tier yet
        return None
    if isinstance(grid, Grid):  # counted without going through every run
        return {tier: len(names) * grid.runs for tier, names in grid.subtests.items()}
    return dict(Counter(key.tier for key in grid))


def saved_with_grid(saved: Mapping[str, Any], change: GridChange) -> dict[str, Any]:
    """The saved config as it is written back: its own values, the grid given now."""
    return with_grid(saved, change.after)
