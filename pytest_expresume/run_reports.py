"""Where tests run (in-process, or on an xdist worker): each run's outcome worked out from
its phases (whatever retry plugin runs them), its result file written, and the finished run
handed on in its last report to the process that records it."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import replace

import pytest

from .grid import RunKey
from .grid_plugin import run_key_of
from .layout import result_path
from .outcome import RunAttempt, is_timeout_message, phase_status
from .rate_limit_retry import RateLimitRetry
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
from .steps import StepNotSaved
from .values import EncodedResult, encode_run_result

_attempt_key = pytest.StashKey[RunAttempt]()
#: The test's result dict, serialized by the ``experiment_run`` fixture at teardown.
result_key = pytest.StashKey[EncodedResult]()
#: The run context the ``experiment_run`` fixture gave the test.
context_key = pytest.StashKey[RunContext]()


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


class RunReportPlugin:
    """Notes each phase of each run, and makes the run's last report carry it finished."""

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
        #: Runs whose call this plugin is running again (its own wrapper lets it through).
        self._retrying: set[str] = set()
        self._rate_limits = RateLimitRetry(
            config, snapshot, say=self._say, stop_session=self._stop_session
        )

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session = session

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> bool | None:
        # shouldstop ends the session after the failing run, but an xdist worker may go on
        # through its queue (older pytest-xdist) or be handed one at shutdown: never a run
        # whose result could not be kept.
        if self._write_failure is not None and run_key_of(item) is not None:
            pytest.exit(self._write_failure, returncode=pytest.ExitCode.INTERRUPTED)
        return None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        # A retry plugin (pytest-retry) may run the call again in place, without a report:
        # each call is noted here, and the last one counts.
        key = run_key_of(item)
        if key is None or item.nodeid in self._retrying:
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
            while error is not None and self._rate_limits.pause_before_retry(
                item.nodeid, key, error, context, before_call
            ):
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

    def _say(self, line: str) -> None:
        if self.recorder_alive is not None:
            return  # an xdist worker: its terminal is nobody's
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line, yellow=True)

    def _stop_after_write_failure(self, message: str) -> None:
        self._write_failure = message
        if self._session is not None:
            self._session.shouldstop = message

    def _stop_session(self, message: str) -> None:
        if self._session is not None:
            self._session.shouldfail = message

    def pytest_unconfigure(self) -> None:
        self._rate_limits.close()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        key = run_key_of(item)
        if key is None:
            return report
        self._note(item, report.when, report, call.excinfo, report.duration)
        if call.excinfo is not None and isinstance(call.excinfo.value, StepNotSaved):
            failed = call.excinfo.value
            self._stop_after_write_failure(
                f"expresume: cannot save step {failed.step!r} of {key.test_id}: "
                f"{failed.filename}: {failed.strerror}; the run is an error and no further "
                "run starts (fix the cause and run pytest again to resume)"
            )
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
        if finished is not None and finished.final:
            # An xdist worker's report, on the controller: the worker decided and wrote.
            return
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
                self._stop_after_write_failure(
                    f"expresume: cannot write the result file of {finished.key.test_id}: "
                    f"{where}: {exc.strerror or exc}; no further run starts here"
                )
        # A write that failed here stops the whole session: under xdist only the recording
        # process can (older pytest-xdist replaces a worker that stops on its own).
        final = replace(
            finished, final=True, written_at=written_at, stops_session=self._write_failure
        )
        setattr(report, REPORT_FIELD, final.to_report())

    def _write_orphan(self, item: pytest.Item, key: RunKey, report: pytest.TestReport) -> None:
        context = item.stash.get(context_key, None)
        if not self.snapshot.writes_results or context is None:
            return
        if context.steps is not None and context.steps.stopped_after:
            return  # --until-step: the run is not done, its steps are on disk already
        attempt = item.stash[_attempt_key]
        if attempt.status() in ("failed", "error") and _may_be_rerun(item):
            # pytest-rerunfailures decides after this report whether the attempt runs
            # again: kept as the run's result, a flaky first attempt would be a verdict for
            # good. Left in flight, the run runs again on resume.
            return
        encoded, _ = encode_run_result(context.result)
        orphan = _finished_run(key, attempt, encoded, context)
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


def _may_be_rerun(item: pytest.Item) -> bool:
    """Whether pytest-rerunfailures may run this failed attempt again (its ``--reruns`` or
    ``flaky(reruns=...)`` marker not used up); erring on yes only costs a rerun."""
    marker = item.get_closest_marker("flaky")
    reruns = marker.kwargs.get("reruns", 1) if marker is not None else None
    if reruns is None:
        reruns = item.config.getoption("reruns", default=0)
    count = getattr(item, "execution_count", 1)
    return isinstance(reruns, int) and isinstance(count, int) and count <= reruns


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
