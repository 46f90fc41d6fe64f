"""Where tests run (in-process, or on an xdist worker): the grid as pytest items, done runs
deselected, and each run's outcome worked out from its reports."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import pytest

from .grid import RunKey
from .outcome import final_status, phase_status, short_message
from .recording import REPORT_FIELD, FinishedRun, key_to_report
from .snapshot import ExperimentSnapshot
from .statuses import RunStatus

RUN_FIXTURE = "experiment_run"
EXPERIMENT_FIXTURE = "experiment"


@dataclass(frozen=True)
class CollectedRuns:
    """Runs of the grid that this session selected and deselected (as done)."""

    selected: int
    deselected: tuple[str, ...]


#: What this process collected; on the xdist controller, what its workers collected.
collected_runs_key = pytest.StashKey[CollectedRuns]()
_phases_key = pytest.StashKey[list[RunStatus]]()
_message_key = pytest.StashKey[str]()
_duration_key = pytest.StashKey[float]()
#: The test's result dict, serialized by the ``experiment_run`` fixture at teardown.
result_key = pytest.StashKey[bytes]()


def run_key_of(item: pytest.Item) -> RunKey | None:
    """The run an item stands for, or None for a test that is not an experiment run."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    key = callspec.params.get(RUN_FIXTURE)
    return key if isinstance(key, RunKey) else None


class GridPlugin:
    """Parametrizes the experiment test over the grid and deselects the runs that are done."""

    def __init__(self, config: pytest.Config, snapshot: ExperimentSnapshot) -> None:
        self.config = config
        self.snapshot = snapshot

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if RUN_FIXTURE in metafunc.fixturenames:
            by_id = self.snapshot.grid.by_test_id()
            metafunc.parametrize(RUN_FIXTURE, list(by_id.values()), ids=list(by_id), indirect=True)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        functions: dict[str, None] = {}
        selected: list[pytest.Item] = []
        deselected: list[pytest.Item] = []
        runs = 0
        for item in items:
            key = run_key_of(item)
            if key is None:
                selected.append(item)
                continue
            functions[item.nodeid.partition("[")[0]] = None
            if key in self.snapshot.skip:
                deselected.append(item)
            else:
                selected.append(item)
                runs += 1
        if len(functions) > 1:
            raise pytest.UsageError(
                f"expresume: only one test function may request {RUN_FIXTURE}; "
                f"found {' and '.join(functions)}"
            )
        config.stash[collected_runs_key] = CollectedRuns(
            runs, tuple(item.nodeid for item in deselected)
        )
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = selected

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        key = run_key_of(item)
        if key is None:
            return report
        excinfo = call.excinfo
        verdict = phase_status(
            report.when,
            report.outcome,
            verdict_exception=excinfo is not None
            and excinfo.errisinstance((AssertionError, pytest.fail.Exception)),
            wasxfail=hasattr(report, "wasxfail"),
            strict_xpass=excinfo is None and report.when == "call" and report.failed,
        )
        phases = item.stash.setdefault(_phases_key, [])
        if verdict is not None:
            phases.append(verdict)
            if verdict in ("failed", "error") and _message_key not in item.stash:
                text = excinfo.exconly() if excinfo is not None else str(report.longrepr)
                item.stash[_message_key] = short_message(text)
        duration = item.stash.get(_duration_key, 0.0) + report.duration
        if report.when != "teardown":
            item.stash[_duration_key] = duration
            setattr(report, REPORT_FIELD, key_to_report(key))
            return report
        finished = FinishedRun(
            key=key,
            status=final_status(phases),
            message=item.stash.get(_message_key, None),
            result_json=item.stash.get(result_key, b"{}"),
            duration_seconds=duration,
        )
        setattr(report, REPORT_FIELD, finished.to_report())
        # A retry plugin may run the item again: its next attempt starts from nothing.
        del item.stash[_phases_key]
        if _message_key in item.stash:
            del item.stash[_message_key]
        if _duration_key in item.stash:
            del item.stash[_duration_key]
        if result_key in item.stash:
            del item.stash[result_key]
        return report
