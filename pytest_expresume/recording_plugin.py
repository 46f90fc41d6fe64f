"""Where runs are recorded (in-process, or on the xdist controller): the session's header,
each run's result file and checkpoint record as its last report arrives, and the summary."""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import threading
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from .grid_plugin import collected_runs_key
from .layout import result_path
from .opening import OpenedExperiment, begin_recording
from .rate_limits import clear_session_files, request_stop
from .recording import RunRecorder, finished_run_of_report
from .run_context import ExpresumeWarning
from .session_header import header_lines
from .status_report import session_summary
from .statuses import LIVE_STATES, ExperimentState, Tally, grid_complete
from .store import Checkpoint, CheckpointError


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"received signal {signum}")


class RecordingPlugin:
    """Records the runs of one opened experiment and reports on them."""

    def __init__(self, config: pytest.Config, opened: OpenedExperiment) -> None:
        self.config = config
        self.opened = opened
        self.recorder: RunRecorder | None = None
        #: The checkpoint as the session left it.
        self.final: Checkpoint | None = None
        self._previous_sigterm: Any = None
        #: Why recording failed (a write error): the session stopped there.
        self.write_failure: str | None = None
        #: Why the experiment could not be marked and compacted at the session's end.
        self.close_failure: str | None = None
        #: Runs recorded ``error`` in a row, and why the session stopped for them.
        self.errors_in_a_row = 0
        #: Step names the recorded runs called (to tell a --from-step no run has).
        self.steps_seen: set[str] = set()
        self.too_many_errors: str | None = None
        self._session: pytest.Session | None = None
        #: Whether starting to record made the results root (a new experiment's parent).
        self._made_results_root = False

    def close(self) -> None:
        """Release files and the session lock, and restore the SIGTERM handler."""
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        if self.recorder is not None:
            self.recorder.store.close()
        self.opened.lock.release()

    def start(self) -> None:
        """Make the experiment dir ready and mark the experiment running (once)."""
        if self.recorder is None:
            self._made_results_root = not self.opened.experiment_dir.parent.exists()
            self.recorder = begin_recording(self.opened)

    def _start_or_stop(self) -> None:
        """Start recording; a write that fails stops the session before any run."""
        try:
            self.start()
        except OSError as exc:
            where = exc.filename or self.opened.experiment_dir
            pytest.exit(
                f"expresume: cannot start recording: {where}: {exc.strerror or exc}; no run "
                "started (fix the cause and run pytest again)",
                returncode=pytest.ExitCode.INTERRUPTED,
            )

    # -- hooks --

    def pytest_collection(self, session: pytest.Session) -> None:
        # Issued here, inside pytest's warning capture, so each is located at the file it
        # is about (not at this plugin's code) and shown once in the warnings summary.
        # Line 0: no line of that file (a corrupt one, or a one-line checkpoint) is quoted.
        for notice in self.opened.notices:
            warnings.warn_explicit(ExpresumeWarning(notice.text), None, str(notice.path), 0)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session = session
        # SIGTERM (a scheduler's stop) ends the session as Ctrl+C does.
        if sys.platform != "win32" and threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        return header_lines(self.opened, _relative(self.opened.plan.experiment_dir))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        collected = self.config.stash.get(collected_runs_key, None)
        if collected is not None and collected.selected and not self.opened.settings.collect_only:
            self._start_or_stop()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        finished = finished_run_of_report(report)
        if finished is None or not finished.final:
            return  # not a run's last report, or an attempt that runs again
        self._start_or_stop()
        assert self.recorder is not None
        try:
            record = self.recorder.record(finished, nodeid=report.nodeid)
        except OSError as exc:
            # Disk full, EIO, a read-only remount: every further run would be paid for and
            # lost. Stop now; what was recorded stays and the next start resumes.
            self.write_failure = (
                f"expresume: cannot record run {finished.key.test_id} ({report.nodeid}): "
                f"{exc.filename or result_path(self.opened.experiment_dir, finished.key)}: "
                f"{exc.strerror or exc}; "
                "the session stops, no further run starts (the runs recorded before are "
                "kept: fix the cause and run pytest again to resume)"
            )
            pytest.exit(self.write_failure, returncode=pytest.ExitCode.INTERRUPTED)
        self._count_errors(finished.status, finished.key.test_id, finished.message)
        self.steps_seen.update(finished.steps)
        # Outside the write's guard: a user's hook that fails (a dashboard down) is theirs.
        self.config.hook.pytest_expresume_run_recorded(config=self.config, record=record)
        if finished.stops_session is not None:
            # The process that ran it could not save what it paid for (a step's value):
            # every further run would be paid for and lost the same way.
            self.write_failure = finished.stops_session
            pytest.exit(self.write_failure, returncode=pytest.ExitCode.INTERRUPTED)

    def _count_errors(self, status: str, test_id: str, message: str | None) -> None:
        """--max-errors: N runs in a row ending in error (an expired key, an outage) stop
        the session like -x, before it pays for the rest."""
        self.errors_in_a_row = self.errors_in_a_row + 1 if status == "error" else 0
        limit = self.opened.settings.max_errors
        if not limit or self.errors_in_a_row < limit or self.too_many_errors is not None:
            return
        first_line = (message or "").strip().splitlines()[:1]
        self.too_many_errors = (
            f"expresume: {self.errors_in_a_row} runs in a row ended in error "
            f"(--max-errors {limit}); the last, {test_id}: "
            f"{first_line[0] if first_line else '(no message)'}; the session stops, the rest "
            "stay pending"
        )
        if self._session is not None:
            self._session.shouldfail = self.too_many_errors
        # xdist workers take no order from here while they run: they read this before
        # each run. A disk too full for it still stops this process (and so xdist's).
        with contextlib.suppress(OSError):
            request_stop(self.opened.experiment_dir, self.too_many_errors)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        opened = self.opened
        plan = opened.plan
        if exitstatus == pytest.ExitCode.USAGE_ERROR and self._withdraw_new_experiment():
            return
        died = opened.checkpoint is not None and opened.checkpoint.status in LIVE_STATES
        # An older layout gets its config saved (so that its grid can grow from now on).
        unsaved = plan.save_config and plan.mode == "resume"
        if (
            self.recorder is None
            and (opened.reconciled or died or plan.grid_change is not None or unsaved)
            and exitstatus != pytest.ExitCode.USAGE_ERROR
            and not opened.settings.collect_only
        ):
            # Nothing ran, but the reconciled runs are kept, a dead session's "running" is
            # corrected (this session holds the lock: nobody else runs it), a grid change is
            # saved.
            try:
                self.start()
            except OSError as exc:
                self._close_failed(exc, session)
        if self.recorder is not None:
            store = self.recorder.store
            grid, rerun = opened.grid, opened.settings.rerun

            def status_of(checkpoint: Checkpoint) -> ExperimentState:
                done = grid_complete(checkpoint.completed_runs, grid, rerun)
                return "completed" if done else "interrupted"

            try:
                self.final = store.end_session(status_of)
                clear_session_files(opened.experiment_dir)
            except OSError as exc:
                # The journal and the snapshot on disk stay as they were: still whole.
                self._close_failed(exc, session)
        collected = self.config.stash.get(collected_runs_key, None)
        if (
            self.close_failure is None
            and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED
            and ((collected is not None and collected.deselected) or opened.counts["to_run"] == 0)
        ):
            # Everything asked for is done already: that is a success, not "no tests".
            session.exitstatus = pytest.ExitCode.OK

    def _withdraw_new_experiment(self) -> bool:
        """A usage error after recording started (xdist's workers found it): the new
        experiment dir this session made, with no run recorded, is removed again."""
        recorder = self.recorder
        if recorder is None or self.opened.plan.mode != "new" or recorder.session_counts.tiers:
            return False
        recorder.store.close()
        self.recorder = None
        self.opened.lock.release()
        shutil.rmtree(self.opened.experiment_dir, ignore_errors=True)
        if self._made_results_root:
            with contextlib.suppress(OSError):  # not empty: somebody else's files came
                self.opened.experiment_dir.parent.rmdir()
        return True

    def _close_failed(self, exc: OSError, session: pytest.Session) -> None:
        self.close_failure = (
            f"expresume: the experiment could not be closed: "
            f"{exc.filename or self.opened.experiment_dir}: {exc.strerror or exc} (the "
            "recorded runs are kept; the next start marks it interrupted)"
        )
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.INTERRUPTED  # not a clean end: say so

    def pytest_terminal_summary(
        self, terminalreporter: pytest.TerminalReporter, exitstatus: int
    ) -> None:
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return  # the usage error is all there is to say
        opened = self.opened
        checkpoint = self.final or opened.checkpoint
        if self.final is None and self.recorder is not None:
            # Not closed (a write failed): what is on disk still reads.
            with contextlib.suppress(OSError, CheckpointError):
                checkpoint = self.recorder.store.load()
        completed = checkpoint.completed_runs if checkpoint else {}
        this_session = self.recorder.session_counts if self.recorder else Tally()
        tr = terminalreporter
        tr.write_sep("=", f"expresume: {opened.plan.spec.experiment_id}")
        for line in session_summary(opened.grid, completed, this_session, opened.settings.rerun):
            tr.write_line(line)
        status_text = checkpoint.status if checkpoint else "not started"
        tr.write_line(
            f"counts: total (+ this session); experiment {status_text} at "
            f"{_relative(opened.experiment_dir)}"
        )
        if self.close_failure is not None:
            tr.write_line(self.close_failure, red=True, bold=True)
        if self.too_many_errors is not None:
            tr.write_line(self.too_many_errors, red=True, bold=True)
        from_step = opened.settings.from_step
        if from_step and self.steps_seen and from_step not in self.steps_seen:
            tr.write_line(
                f"expresume: --from-step {from_step}: no run recorded this session has a step "
                f"of that name (its steps: {', '.join(sorted(self.steps_seen))}), so every "
                "finished step was reused",
                red=True,
                bold=True,
            )
        pauses = checkpoint.extra.get("pause_count") if checkpoint else None
        before = opened.checkpoint.extra.get("pause_count") if opened.checkpoint else None
        paused = (pauses if isinstance(pauses, int) else 0) - (
            before if isinstance(before, int) else 0
        )
        if paused > 0 and checkpoint is not None:
            tr.write_line(
                f"expresume: {paused} rate-limit pauses this session (the last until "
                f"{checkpoint.extra.get('rate_limit_until')}, "
                f"{checkpoint.extra.get('rate_limit_source')})"
            )
        if self.recorder is None and opened.counts["to_run"] == 0:
            tr.write_line(f"expresume: all {len(opened.grid)} runs are done; nothing to run")
