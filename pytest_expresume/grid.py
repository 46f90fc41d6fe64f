"""The experiment grid: run keys, their order and their test ids."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from .config import ConfigError, ExperimentSpec, check_name
from .layout import run_dir_name


class RunKey(NamedTuple):
    """One run of the grid: tier and subtest names, run number from 1."""

    tier: str
    subtest: str
    run: int

    @property
    def test_id(self) -> str:
        """The pytest parameter id, e.g. ``T0-00-run_01``."""
        return f"{self.tier}-{self.subtest}-{run_dir_name(self.run)}"


@dataclass(frozen=True)
class Grid:
    """Tiers in config order, each with its subtests, each repeated ``runs`` times."""

    subtests: Mapping[str, tuple[str, ...]]
    runs: int

    def __iter__(self) -> Iterator[RunKey]:
        for tier, names in self.subtests.items():
            for subtest in names:
                for run in range(1, self.runs + 1):
                    yield RunKey(tier, subtest, run)

    def __len__(self) -> int:
        return sum(len(names) for names in self.subtests.values()) * self.runs

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, RunKey):
            return False
        names = self._subtest_sets.get(key.tier)
        return names is not None and key.subtest in names and 1 <= key.run <= self.runs

    @cached_property
    def _subtest_sets(self) -> dict[str, frozenset[str]]:
        return {tier: frozenset(names) for tier, names in self.subtests.items()}

    def by_test_id(self) -> dict[str, RunKey]:
        """Map each test id to its run key; names that would give one id twice are an error."""
        return self._by_test_id

    @cached_property
    def _by_test_id(self) -> dict[str, RunKey]:
        ids: dict[str, RunKey] = {}
        for key in self:
            other = ids.setdefault(key.test_id, key)
            if other != key:
                raise ConfigError(
                    f"runs {tuple(other)} and {tuple(key)} get the same test id "
                    f"{key.test_id!r}: rename a tier or subtest so '-' does not make them clash"
                )
        return ids

    def to_json(self) -> dict[str, object]:
        """A plain form that crosses process boundaries (xdist workers)."""
        return {"subtests": {t: list(s) for t, s in self.subtests.items()}, "runs": self.runs}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Grid:
        """Inverse of :meth:`to_json`."""
        subtests = data["subtests"]
        runs = data["runs"]
        assert isinstance(subtests, dict)
        assert isinstance(runs, int)
        return cls({t: tuple(s) for t, s in subtests.items()}, runs)


SubtestSource = Callable[[str], Sequence[str] | None]


def build_grid(spec: ExperimentSpec, subtests_for_tier: SubtestSource) -> Grid:
    """Resolve every tier's subtests (config first, then the hook) and apply max_subtests."""
    resolved: dict[str, tuple[str, ...]] = {}
    for tier in spec.tiers:
        names: Sequence[str] | None
        if isinstance(spec.subtests, tuple):
            names = spec.subtests
        elif spec.subtests is not None and tier in spec.subtests:
            names = spec.subtests[tier]
        else:
            names = subtests_for_tier(tier)
            if names is None:
                raise ConfigError(
                    f"no subtests for tier {tier!r}: give subtests in the config "
                    "or implement the hook pytest_expresume_subtests"
                )
            names = list(names)
            if not names:
                raise ConfigError(f"pytest_expresume_subtests gave no subtests for tier {tier!r}")
        checked = tuple(check_name(n, f"subtest of {tier}") for n in names)
        if len(set(checked)) != len(checked):
            raise ConfigError(f"subtests of {tier} name a subtest twice: {list(checked)}")
        if spec.max_subtests is not None:
            checked = checked[: spec.max_subtests]
        resolved[tier] = checked
    grid = Grid(resolved, spec.runs_per_subtest)
    grid.by_test_id()
    return grid
