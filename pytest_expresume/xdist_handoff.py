"""pytest-xdist: every worker gets the controller's snapshot of the experiment, and the
controller learns what the workers deselected and which run a crashed worker was running.

Registered only when xdist distributes the session; only xdist's documented hooks and
``workerinput``/``workeroutput`` are used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .grid import RunKey
from .grid_plugin import CollectedRuns, collected_runs_key, refusal_key
from .outcome import short_message
from .rate_limits import PAUSE_NAME, current_pause
from .recording import REPORT_FIELD, FinishedRun, finished_run_of_report, run_key_of_report
from .recording_plugin import RecordingPlugin
from .session_lock import read_holder
from .snapshot import ExperimentSnapshot

#: Keys in ``workerinput`` (controller to workers) and ``workeroutput`` (back).
HANDOFF = "expresume"
DESELECTED = "expresume_deselected"
REFUSED = "expresume_refused"


def distributes(config: pytest.Config) -> bool:
    """Whether this process is an xdist controller that will start workers."""
    if not config.pluginmanager.hasplugin("xdist") or config.getoption("collectonly"):
        return False
    return config.getoption("dist", "no") != "no" and bool(config.getoption("tx", None))


def worker_snapshot(handoff: dict[str, Any]) -> ExperimentSnapshot:
    """The snapshot a worker got; it writes result files itself when it sees the experiment
    dir the controller holds (the session lock names the controller), not a copy or none."""
    experiment_dir = Path(handoff["experiment_dir"])
    sees = bool(handoff["holder"]) and read_holder(experiment_dir) == handoff["holder"]
    return ExperimentSnapshot.from_handoff(handoff, writes_results=sees)


class XdistWorker:
    """On a worker: start no run once the controller is gone, and tell it which runs this
    worker deselected as done."""

    def __init__(self, handoff: dict[str, Any]) -> None:
        # A worker the controller started on this host (popen) is its child: when the
        # controller dies, even by kill -9, the worker gets another parent at once. Another
        # gateway's worker cannot tell, and trusts the controller to be there.
        pid = handoff["holder"].get("pid")
        self.controller_pid: int | None = pid if pid == os.getppid() else None

    def controller_alive(self) -> bool:
        """False once the controller is known to be gone."""
        return self.controller_pid is None or os.getppid() == self.controller_pid

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> None:
        if not self.controller_alive():
            # Its reports would reach nobody: a run started now is paid for and lost.
            pytest.exit(
                f"expresume: the xdist controller (pid {self.controller_pid}) is gone: "
                "this worker starts no new run",
                returncode=pytest.ExitCode.INTERRUPTED,
            )

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        collected = session.config.stash.get(collected_runs_key, None)
        workeroutput: dict[str, Any] = session.config.workeroutput  # type: ignore[attr-defined]
        if collected is not None:
            workeroutput[DESELECTED] = list(collected.deselected)
        refusal = session.config.stash.get(refusal_key, None)
        if refusal is not None:
            workeroutput[REFUSED] = refusal


class XdistController:
    """On the controller: hand out the snapshot, count deselections, record crashed runs."""

    def __init__(self, recording: RecordingPlugin, snapshot: ExperimentSnapshot) -> None:
        self.recording = recording
        self.snapshot = snapshot
        self._handoff: dict[str, Any] | None = None
        #: Runs a worker has started and not finished, by node id.
        self.in_flight: dict[str, RunKey] = {}
        #: The pause file's modification time when it was last told.
        self._pause_seen: int | None = None
        #: A usage error the workers found in their collection.
        self._refused: str | None = None

    def pytest_configure_node(self, node: Any) -> None:
        if self._handoff is None:
            # Recording has started (sessionstart): the session lock names us now.
            self._handoff = {
                **self.snapshot.to_handoff(),
                "holder": dict(self.recording.opened.lock.holder),
            }
        node.workerinput[HANDOFF] = self._handoff

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Before xdist starts the workers (its own sessionstart, trylast): they are handed
        # the session lock's holder, and the controller, which collects nothing itself,
        # cannot tell whether runs will be selected.
        self.recording.start()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if finished_run_of_report(report) is not None:
            self.in_flight.pop(report.nodeid, None)
        elif (key := run_key_of_report(report)) is not None:
            self.in_flight[report.nodeid] = key
        self._tell_pause()

    def _tell_pause(self) -> None:
        # A worker's terminal is nobody's: the controller says a pause it finds on file
        # when the next report arrives (runs in flight on other workers go on reporting).
        path = self.snapshot.experiment_dir / PAUSE_NAME
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return
        if stamp == self._pause_seen:
            return
        self._pause_seen = stamp
        pause = current_pause(self.snapshot.experiment_dir)
        reporter = self.recording.config.pluginmanager.get_plugin("terminalreporter")
        if pause is None or pause.until <= time.time() or reporter is None:
            return
        reporter.ensure_newline()
        reporter.write_line(
            f"expresume: a run was rate-limited by {pause.source}: the experiment pauses "
            f"until {pause.until_iso} (no worker starts a run before)",
            yellow=True,
        )

    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        key = self.in_flight.pop(crashitem, None)
        if key is None:
            return  # it crashed before its setup was reported: it stays pending
        crashed = FinishedRun(
            key=key,
            status="error",
            message=short_message(str(report.longrepr)) or "worker crashed",
            result_json=b"{}",
            duration_seconds=report.duration,
            final=True,
        )
        setattr(report, REPORT_FIELD, crashed.to_report())

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        result = yield
        if self._refused is not None:
            # Raised here, as in-process from the collection: one message, exit 4.
            raise pytest.UsageError(self._refused)
        return result

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        config = self.recording.config
        workeroutput = getattr(node, "workeroutput", {})
        self._refused = self._refused or workeroutput.get(REFUSED)
        nodeids = workeroutput.get(DESELECTED)
        if nodeids is None or collected_runs_key in config.stash:
            return
        # Every worker deselected the same runs from the same snapshot: count them once.
        config.stash[collected_runs_key] = CollectedRuns(0, tuple(nodeids))
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and nodeids:
            # Straight into the summary's counts: pytest_deselected would hand every plugin
            # that implements it stand-ins for items this process never collected.
            reporter.stats.setdefault("deselected", []).extend(map(DeselectedRun, nodeids))


@dataclass(frozen=True)
class DeselectedRun:
    """A done run a worker deselected, as counted in the controller's summary."""

    nodeid: str
