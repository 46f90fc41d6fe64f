"""Where tests run (in-process, or on an xdist worker): the grid as pytest items, done runs
deselected, and each run's outcome worked out from its phases."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from .grid import RunKey
from .layout import result_path
from .outcome import RunAttempt, is_timeout_message, phase_status
from .rate_limits import (
    Pause,
    RateLimited,
    announce_pause,
    request_stop,
    stop_requested,
    wait_out_pause,
)
from .recording import (
    REPORT_FIELD,
    FinishedRun,
    finished_run_of_report,
    key_to_report,
    write_run_result,
)
from .run_context import RunContext
from .snapshot import ExperimentSnapshot
from .statuses import RUN_STATUSES, RunStatus, as_run_status
from .store import CheckpointStore
from .values import EncodedResult, encode_result

#: In-place retries of one run's call after rate limits, at most (whatever the pauses).
MAX_RATE_LIMIT_RETRIES = 30

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
_attempt_key = pytest.StashKey[RunAttempt]()
#: The test's result dict, serialized by the ``experiment_run`` fixture at teardown.
result_key = pytest.StashKey[EncodedResult]()
#: The run context the ``experiment_run`` fixture gave the test.
context_key = pytest.StashKey[RunContext]()


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


def _finished_run(
    key: RunKey, attempt: RunAttempt, encoded: EncodedResult, context: RunContext | None
) -> FinishedRun:
    """The run as its attempt ended, with the test's result and steps as saved."""
    steps = context.steps.to_json() if context is not None and context.steps else {}
    return FinishedRun(
        key=key,
        status=attempt.status(),
        message=attempt.message(),
        result_json=encoded.data,
        duration_seconds=attempt.duration(),
        conversions=tuple(c.to_json() for c in encoded.conversions),
        steps=steps,
    )


class GridPlugin:
    """Parametrizes the experiment test over the grid and deselects the runs that are done."""

    def __init__(
        self,
        config: pytest.Config,
        snapshot: ExperimentSnapshot,
        *,
        recorder_alive: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.snapshot = snapshot
        #: Whether the process that records (the xdist controller) is still there.
        self.recorder_alive = recorder_alive
        #: Runs whose current attempt a retry plugin will run again (by node id).
        self._rerunning: set[str] = set()
        self._session: pytest.Session | None = None
        #: Why this process could not write a result file: it starts no further run.
        self._write_failure: str | None = None
        #: Seconds each run (by node id) has been paused for rate limits, and how often.
        self._paused: dict[str, float] = {}
        self._retries: dict[str, int] = {}
        #: Runs whose call this plugin is running again (its own wrapper lets it through).
        self._retrying: set[str] = set()
        #: The checkpoint, for a pause's fields (opened at the first pause).
        self._store: CheckpointStore | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session = session

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> bool | None:
        if run_key_of(item) is None:
            return None
        # shouldstop ends the session after the failing run, but an xdist worker may go on
        # through its queue (older pytest-xdist) or be handed one at shutdown: never a run
        # whose result could not be kept.
        if self._write_failure is not None:
            pytest.exit(self._write_failure, returncode=pytest.ExitCode.INTERRUPTED)
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
                raise pytest.UsageError(
                    f"expresume: {item.nodeid} is parametrized over {extra} besides the "
                    "experiment grid; put such variations into subtests or tiers"
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
            raise pytest.UsageError(
                f"expresume: only one test function may request {RUN_FIXTURE}; "
                f"found {' and '.join(functions)}"
            )
        config.stash[collected_runs_key] = CollectedRuns(
            runs, tuple(item.nodeid for item in deselected)
        )
        if deselected:
            config.hook.pytest_deselected(items=deselected)
        if deselected or last:
            items[:] = selected + last

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        # A retry plugin (pytest-retry) may run the call again in place, without a report:
        # each call is noted here, and the last one counts.
        if run_key_of(item) is None or item.nodeid in self._retrying:
            return (yield)
        started = time.perf_counter()
        context = item.stash.get(context_key, None)
        # What fixtures put into the result before the call: a retried call starts there.
        before_call = dict(context.result) if context is not None else {}
        try:
            result = yield
        except BaseException as exc:
            # A rate limit pauses the experiment, then the call runs again in place (its
            # finished steps reused), for as long as the pauses stay within the limit.
            error: BaseException | None = exc
            while error is not None and self._paused_and_retrying(item, error, before_call):
                # Through the hook, so that other plugins' call wrappers (pytest-timeout's
                # timeout_func_only) hold for the retry too; ours lets it through.
                self._retrying.add(item.nodeid)
                try:
                    item.ihook.pytest_runtest_call(item=item)
                    error = None
                except BaseException as again:
                    error = again
                finally:
                    self._retrying.discard(item.nodeid)
            if error is not None:
                excinfo = pytest.ExceptionInfo.from_exception(error)
                self._note(item, "call", None, excinfo, time.perf_counter() - started)
                if error is exc:
                    raise
                raise error from None
            result = None
        self._note(item, "call", None, None, time.perf_counter() - started)
        return result

    def _paused_and_retrying(
        self, item: pytest.Item, exc: BaseException, before_call: dict[str, Any]
    ) -> bool:
        """Whether ``exc`` is a rate limit within the limit: if so, the experiment was
        paused (all processes wait) and the run's call is to run again."""
        if isinstance(exc, RateLimited):
            seconds: float | None = exc.retry_after
            source = exc.source
        elif isinstance(exc, Exception):
            seconds = self.config.hook.pytest_expresume_rate_limit(config=self.config, exc=exc)
            source = type(exc).__name__
        else:
            return False  # KeyboardInterrupt, pytest's own outcomes: never a rate limit
        if seconds is None:
            return False
        key = run_key_of(item)
        assert key is not None
        # Each pause lasts at least a second, and the retries are capped: a provider that
        # says "retry after 0" forever must not run the call forever.
        seconds = max(1.0, float(seconds))
        paused = self._paused.get(item.nodeid, 0.0) + seconds
        self._paused[item.nodeid] = paused
        retries = self._retries.get(item.nodeid, 0) + 1
        self._retries[item.nodeid] = retries
        limit = self.snapshot.max_pause
        if paused > limit or retries > MAX_RATE_LIMIT_RETRIES:
            why = (
                f"for {paused:g} s in all, longer than expresume_max_pause ({limit:g} s)"
                if paused > limit
                else f"{retries} times, more than {MAX_RATE_LIMIT_RETRIES}"
            )
            message = (
                f"expresume: {key.test_id} was rate-limited by {source} {why}: recorded "
                "error, and the session stops (resume later)"
            )
            if self._session is not None:
                self._session.shouldfail = message
            if self.snapshot.writes_results:
                with contextlib.suppress(OSError):  # this process stops either way
                    request_stop(self.snapshot.experiment_dir, message)
            return False
        now = time.time()
        if self.snapshot.writes_results:
            experiment_dir = self.snapshot.experiment_dir
            pause = announce_pause(experiment_dir, seconds, source, now)
            store = self._pause_store()
            if store is not None:
                store.note_pause(pause.until_iso, pause.source)
        else:
            # A remote worker (the experiment dir is not here): it pauses alone.
            pause, store = Pause(now + seconds, source), None
        self._say(
            f"expresume: {key.test_id} was rate-limited by {source}: the experiment pauses "
            f"until {pause.until_iso} ({seconds:g} s), then the run goes on"
        )
        # Until the later of this pause and any on file (another worker's may be longer).
        while time.time() < now + seconds:
            time.sleep(min(1.0, now + seconds - time.time()))
        if self.snapshot.writes_results:
            wait_out_pause(self.snapshot.experiment_dir)
        if store is not None:
            store.set_status("running")
        context = item.stash.get(context_key, None)
        if context is not None:
            context.result.clear()
            context.result.update(before_call)
            if context.steps is not None:
                context.steps.restart()
        return True

    def _pause_store(self) -> CheckpointStore | None:
        if not self.snapshot.writes_results:
            return None  # a remote worker: the experiment dir is not here
        if self._store is None:
            self._store = CheckpointStore(
                self.snapshot.experiment_dir, fsync=False, fsync_journal=False
            )
        return self._store

    def _say(self, line: str) -> None:
        if self.recorder_alive is not None:
            return  # an xdist worker: its terminal is nobody's
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line, yellow=True)

    def pytest_unconfigure(self) -> None:
        if self._store is not None:
            self._store.close()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        key = run_key_of(item)
        if key is None:
            return report
        self._note(item, report.when, report, call.excinfo, report.duration)
        if report.when == "call" and self.recorder_alive is not None and not self.recorder_alive():
            # This report can reach nobody (sending it ends this worker): keep the paid-for
            # result now, as the call left it, for the next start to reconcile.
            self._write_orphan(item, key, report)
        if report.when != "teardown":
            setattr(report, REPORT_FIELD, key_to_report(key))
            return report
        attempt = item.stash[_attempt_key]
        # The attempt is over: one that a retry plugin runs again starts from nothing.
        del item.stash[_attempt_key]
        encoded = item.stash.get(result_key, None) or EncodedResult(b"{}")
        context = item.stash.get(context_key, None)
        finished = _finished_run(key, attempt, encoded, context)
        if result_key in item.stash:
            del item.stash[result_key]
        if context_key in item.stash:
            del item.stash[context_key]  # items live all session: keep no result dicts
        if context is not None and context.steps and context.steps.stopped_after:
            # --until-step: the run is not done; nothing is recorded, the next session
            # goes on from its next step.
            setattr(report, REPORT_FIELD, key_to_report(key))
            return report
        setattr(report, REPORT_FIELD, finished.to_report())
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Here, before xdist sends the report on, the process that ran the run decides
        # whether this attempt is its last, and then writes its result file.
        finished = finished_run_of_report(report)
        if report.when == "setup" and report.outcome != "rerun":  # type: ignore[comparison-overlap]
            # A new attempt (older pytest-rerunfailures logs no teardown for a rerun one).
            self._rerunning.discard(report.nodeid)
        if report.outcome == "rerun":  # type: ignore[comparison-overlap]
            # pytest-rerunfailures runs this attempt again: its teardown report (which
            # carries the attempt's outcome) is not the run's last.
            if finished is None:
                self._rerunning.add(report.nodeid)
            else:
                self._rerunning.discard(report.nodeid)
            return
        if finished is None:
            return
        if report.nodeid in self._rerunning:
            self._rerunning.discard(report.nodeid)
            return
        written_at = None
        if self.snapshot.writes_results:
            try:
                _, written_at = write_run_result(
                    self.snapshot.experiment_dir,
                    finished,
                    nodeid=report.nodeid,
                    fsync=self.snapshot.fsync,
                )
            except OSError as exc:
                # The result travels on in the report: the recorder writes it or, if it
                # cannot either, stops the session naming the run and the path. This
                # process starts no further run (an xdist worker would, from its queue).
                written_at = None
                where = exc.filename or result_path(self.snapshot.experiment_dir, finished.key)
                self._write_failure = (
                    f"expresume: cannot write the result file of {finished.key.test_id}: "
                    f"{where}: {exc.strerror or exc}; no further run starts here"
                )
                if self._session is not None:
                    self._session.shouldstop = self._write_failure
        final = replace(finished, final=True, written_at=written_at)
        setattr(report, REPORT_FIELD, final.to_report())

    def _write_orphan(self, item: pytest.Item, key: RunKey, report: pytest.TestReport) -> None:
        context = item.stash.get(context_key, None)
        if not self.snapshot.writes_results or context is None:
            return
        if context.steps is not None and context.steps.stopped_after:
            return  # --until-step: the run is not done, its steps are on disk already
        attempt = item.stash[_attempt_key]
        orphan = _finished_run(key, attempt, encode_result(context.result), context)
        write_run_result(
            self.snapshot.experiment_dir, orphan, nodeid=report.nodeid, fsync=self.snapshot.fsync
        )

    @pytest.hookimpl(trylast=True)
    def pytest_expresume_run_status(
        self,
        config: pytest.Config,
        item: pytest.Item,
        report: pytest.TestReport | None,
        excinfo: pytest.ExceptionInfo[BaseException] | None,
    ) -> str | None:
        if excinfo is not None and is_timeout_message(excinfo.exconly()):
            return "error"  # pytest-timeout's signal method: the run did not finish
        return None

    def _note(
        self,
        item: pytest.Item,
        when: str,
        report: pytest.TestReport | None,
        excinfo: pytest.ExceptionInfo[BaseException] | None,
        duration: float,
    ) -> None:
        answer = self.config.hook.pytest_expresume_run_status(
            config=self.config, item=item, report=report, excinfo=excinfo
        )
        status = as_run_status(answer)
        if answer is None:
            status = _default_status(when, report, excinfo)
        elif status is None:
            raise ValueError(
                f"pytest_expresume_run_status gave {answer!r} for {item.nodeid}; "
                f"allowed: {', '.join(RUN_STATUSES)}"
            )
        text = excinfo.exconly() if excinfo is not None else str(getattr(report, "longrepr", ""))
        attempt = item.stash.setdefault(_attempt_key, RunAttempt())
        attempt.note(when, status, text, duration)


def _default_status(
    when: str,
    report: pytest.TestReport | None,
    excinfo: pytest.ExceptionInfo[BaseException] | None,
) -> RunStatus | None:
    verdict = excinfo is not None and excinfo.errisinstance((AssertionError, pytest.fail.Exception))
    if report is None:  # a call run again in place: no report, only what it raised
        if excinfo is None:
            return "passed"
        outcome = "skipped" if excinfo.errisinstance(pytest.skip.Exception) else "failed"
        return phase_status(
            "call", outcome, verdict_exception=verdict, wasxfail=False, strict_xpass=False
        )
    return phase_status(
        report.when,
        report.outcome,
        verdict_exception=verdict,
        wasxfail=hasattr(report, "wasxfail"),
        strict_xpass=excinfo is None and report.when == "call" and report.failed,
    )
