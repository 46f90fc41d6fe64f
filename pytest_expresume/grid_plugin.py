"""Where tests run (in-process, or on an xdist worker): the grid as pytest items, the runs
that are done deselected, and no run started while the experiment pauses or must stop."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import pytest

from .grid import RunKey
from .rate_limits import stop_requested, wait_out_pause
from .snapshot import ExperimentSnapshot

RUN_FIXTURE = "experiment_run"
EXPERIMENT_FIXTURE = "experiment"
#: The parameter pytest-repeat's ``--count`` adds.
_REPEAT_PARAM = "__pytest_repeat_step_number"


@dataclass(frozen=True)
class CollectedRuns:
    """Runs of the grid that this session selected and deselected (as done)."""

    selected: int
    deselected: tuple[str, ...]


#: What this process collected; on the xdist controller, what its workers collected.
collected_runs_key = pytest.StashKey[CollectedRuns]()
#: Why an xdist worker refused its collection (a usage error the controller raises).
refusal_key = pytest.StashKey[str]()


def run_key_of(item: pytest.Item) -> RunKey | None:
    """The run an item stands for, or None for a test that is not an experiment run."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    key = callspec.params.get(RUN_FIXTURE)
    return key if isinstance(key, RunKey) else None


def _extra_parameter(item: pytest.Item) -> str | None:
    params = [name for name in item.callspec.params if name != RUN_FIXTURE]  # type: ignore[attr-defined]
    if not params:
        return None
    if _REPEAT_PARAM in params:
        return f"{_REPEAT_PARAM!r} (pytest-repeat's --count)"
    return ", ".join(repr(name) for name in params)


class GridPlugin:
    """Parametrizes the experiment test over the grid and deselects the runs that are done."""

    def __init__(
        self, config: pytest.Config, snapshot: ExperimentSnapshot, *, on_worker: bool = False
    ) -> None:
        self.config = config
        self.snapshot = snapshot
        #: On an xdist worker a usage error would be xdist's internal error: a refusal is
        #: handed to the controller instead (see :data:`refusal_key`), which raises it.
        self.on_worker = on_worker
        self._session: pytest.Session | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session = session

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> bool | None:
        if run_key_of(item) is None:
            return None
        stop = stop_requested(self.snapshot.experiment_dir)
        if stop is not None and self._session is not None:
            # The recording process asked (--max-errors): this run is not started, and
            # this process stops after it, as -x would.
            self._session.shouldfail = stop
            return True
        return None

    @pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_runtest_protocol")
    def pytest_runtest_protocol_after_a_pause(
        self, item: pytest.Item
    ) -> Generator[None, object, object]:
        # A rate-limit pause that another process (an xdist worker) announced holds here,
        # outside every other wrapper: pytest-timeout's timer has not started yet.
        if run_key_of(item) is not None and self.snapshot.writes_results:
            wait_out_pause(self.snapshot.experiment_dir)
        return (yield)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if RUN_FIXTURE in metafunc.fixturenames:
            by_id = self.snapshot.grid.by_test_id()
            metafunc.parametrize(RUN_FIXTURE, list(by_id.values()), ids=list(by_id), indirect=True)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        functions: dict[str, None] = {}
        runs = 0
        selected: list[pytest.Item] = []
        last: list[pytest.Item] = []
        deselected: list[pytest.Item] = []
        for item in items:
            key = run_key_of(item)
            if key is None:
                selected.append(item)
                continue
            extra = _extra_parameter(item)
            if extra is not None:
                # Two items of one run would overwrite each other's paid-for result.
                return self._refuse(
                    f"expresume: {item.nodeid} is parametrized over {extra} besides the "
                    "experiment grid; put such variations into subtests or tiers",
                    items,
                )
            functions[item.nodeid.partition("[")[0]] = None
            if key in self.snapshot.skip:
                deselected.append(item)
            elif key in self.snapshot.in_flight:
                last.append(item)
                runs += 1
            else:
                selected.append(item)
                runs += 1
        if len(functions) > 1:
            return self._refuse(
                f"expresume: only one test function may request {RUN_FIXTURE}; "
                f"found {' and '.join(functions)}",
                items,
            )
        config.stash[collected_runs_key] = CollectedRuns(
            runs, tuple(item.nodeid for item in deselected)
        )
        if deselected:
            config.hook.pytest_deselected(items=deselected)
        if deselected or last:
            items[:] = selected + last

    def _refuse(self, message: str, items: list[pytest.Item]) -> None:
        if not self.on_worker:
            raise pytest.UsageError(message)
        self.config.stash[refusal_key] = message
        items.clear()  # every worker refuses alike: all collect nothing, and run nothing
