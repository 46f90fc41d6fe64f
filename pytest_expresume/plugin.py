"""The pytest glue: hooks, fixtures, and the experiment plugin (registered only when active)."""

from __future__ import annotations

import signal
import sys
from collections import Counter
from collections.abc import Generator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import Any

import orjson
import pytest

from . import hookspecs
from .commands import run_command
from .config import ConfigError, freeze
from .grid import Grid, RunKey
from .layout import prepare_run_dir, remove_stale_temp_files, save_config
from .options import add_options, given_config, grid_for, parse_rerun, plan_request
from .outcome import final_status, phase_status, short_message
from .planning import PlanRequest, SessionPlan, plan_session
from .rebuild import rebuild_checkpoint
from .recording import RunRecord, RunRecorder
from .run_context import ExperimentInfo, ExpresumeWarning, RunContext
from .scanner import unrecorded_results
from .session_lock import ExperimentBusy, SessionLock
from .status_report import session_summary
from .store import RUN_STATUSES, Checkpoint, CheckpointError, CheckpointStore, RunStatus
from .xdist_handoff import DESELECTED, HANDOFF, XdistHandoff

RUN_FIXTURE = "experiment_run"


plugin_key = pytest.StashKey["ExperimentPlugin"]()
_phases_key = pytest.StashKey[list[RunStatus]]()
_message_key = pytest.StashKey[str]()
_result_key = pytest.StashKey[bytes]()
_duration_key = pytest.StashKey[float]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    rebuild = bool(config.getoption("expresume_rebuild"))
    status = bool(config.getoption("expresume_status"))
    if not rebuild and not status:
        return None
    try:
        return run_command(config, rebuild=rebuild, status=status)
    except ConfigError as exc:
        raise pytest.UsageError(f"expresume: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and HANDOFF in workerinput:
        plugin = ExperimentPlugin.from_handoff(config, workerinput[HANDOFF])
    else:
        try:
            plugin_or_none = ExperimentPlugin.from_options(config)
        except ConfigError as exc:
            raise pytest.UsageError(f"expresume: {exc}") from None
        if plugin_or_none is None:
            return
        plugin = plugin_or_none
        if plugin.plan is not None:
            for note in plugin.plan_notes:
                config.issue_config_time_warning(ExpresumeWarning(note), stacklevel=2)
    config.stash[plugin_key] = plugin
    config.pluginmanager.register(plugin, "expresume-experiment")
    if plugin.records and config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHandoff(plugin), "expresume-xdist")


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.stash.get(plugin_key, None)
    if plugin is not None:
        plugin.close()
        del config.stash[plugin_key]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if plugin_key in config.stash:
        return
    for item in items:
        if RUN_FIXTURE in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(
                f"expresume: {item.nodeid} requests {RUN_FIXTURE} but no experiment config is "
                "given: use --experiment FILE, the ini option expresume_config, "
                "--experiment-set KEY=VALUE or --experiment-dir DIR"
            )


def _experiment_plugin(request: pytest.FixtureRequest) -> ExperimentPlugin:
    plugin = request.config.stash.get(plugin_key, None)
    if plugin is None:
        raise pytest.UsageError(f"expresume: {RUN_FIXTURE} needs an experiment config")
    return plugin


@pytest.fixture
def experiment_run(request: pytest.FixtureRequest) -> Iterator[RunContext]:
    """One run of the experiment grid; the test fills ``result``."""
    plugin = _experiment_plugin(request)
    key: RunKey = request.param
    context = RunContext(
        tier=key.tier,
        subtest=key.subtest,
        run=key.run,
        dir=prepare_run_dir(plugin.experiment_dir, key),
        config=plugin.frozen_config,
    )
    yield context
    if "expresume" in context.result:
        raise ValueError("experiment_run.result may not use the key 'expresume' (the plugin's)")
    try:
        request.node.stash[_result_key] = orjson.dumps(context.result)
    except TypeError as exc:
        raise TypeError(f"experiment_run.result cannot be saved as JSON: {exc}") from None


@pytest.fixture(scope="session")
def experiment(request: pytest.FixtureRequest) -> ExperimentInfo:
    """The experiment of this session: config, dir and counts at session start."""
    plugin = _experiment_plugin(request)
    return ExperimentInfo(plugin.frozen_config, plugin.experiment_dir, plugin.start_counts())


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"received signal {signum}")


class ExperimentPlugin:
    """The active experiment of one pytest process.

    In-process or on the xdist controller it records runs (``records`` is True); on an
    xdist worker it only parametrizes, deselects and prepares run dirs from the
    controller's snapshot.
    """

    def __init__(
        self,
        config: pytest.Config,
        *,
        experiment_dir: Path,
        experiment: dict[str, Any],
        grid: Grid,
        skip: set[RunKey],
        records: bool,
        plan: SessionPlan | None = None,
        rerun: frozenset[str] = frozenset({"error"}),
    ) -> None:
        self.config = config
        self.experiment_dir = experiment_dir
        self.experiment = experiment
        self.frozen_config: MappingProxyType[str, Any] = freeze(experiment)
        self.grid = grid
        self.keys_by_id = grid.by_test_id()
        self.skip = skip
        self.records = records
        self.plan = plan
        self.rerun = rerun
        self.recorder: RunRecorder | None = None
        self.final: Checkpoint | None = None
        self.deselected_done = 0
        #: Runs whose result files the checkpoint did not list, recorded when we start.
        self.reconciled: dict[RunKey, RunStatus] = {}
        #: Things the user must hear about (warnings and header lines).
        self.plan_notes: list[str] = []
        #: In-process: an experiment run is selected, so there is something to record.
        self.has_runs_to_record = False
        self._previous_sigterm: Any = None
        self.session_lock: SessionLock | None = None
        self._start_counts: MappingProxyType[str, int] | None = None

    # -- construction --

    @classmethod
    def from_options(cls, config: pytest.Config) -> ExperimentPlugin | None:
        """Resolve the experiment of this session, or None when no experiment is given."""
        given = given_config(config)
        experiment_dir_opt = config.getoption("expresume_dir")
        resume = bool(config.getoption("expresume_resume"))
        fresh = bool(config.getoption("expresume_fresh"))
        if given is None and experiment_dir_opt is None and not resume and not fresh:
            return None
        rerun = parse_rerun(config.getoption("expresume_rerun"))
        request = plan_request(config, given)
        plan = plan_session(request, datetime.now(timezone.utc))
        grid = grid_for(config, plan.spec, plan.experiment)
        lock = SessionLock(plan.experiment_dir)
        if plan.mode == "resume" and not config.option.collectonly:
            try:
                lock.acquire()
            except ExperimentBusy as exc:
                raise ConfigError(str(exc)) from None
            try:
                return cls._from_plan(config, request, plan, grid, rerun, lock)
            except BaseException:
                lock.release()
                raise
        return cls._from_plan(config, request, plan, grid, rerun, lock)

    @classmethod
    def _from_plan(
        cls,
        config: pytest.Config,
        request: PlanRequest,
        plan: SessionPlan,
        grid: Grid,
        rerun: frozenset[str],
        lock: SessionLock,
    ) -> ExperimentPlugin:
        """The plugin for a plan: the checkpoint read anew under the session lock (when
        resuming), repaired if corrupt, and reconciled with the result files."""
        notes: list[str] = []
        if plan.mode == "resume" and plan.corruption is None and lock.held:
            with CheckpointStore(plan.experiment_dir) as store:
                if store.exists():
                    try:
                        plan.checkpoint = store.load()
                    except CheckpointError as exc:
                        plan.corruption = str(exc)
        if plan.corruption is not None and not config.option.collectonly:
            report = rebuild_checkpoint(
                plan.experiment_dir,
                result_status=request.result_status,
                fsync=bool(config.getini("expresume_fsync")),
                set_aside_corrupt=True,
                grid_keys=set(grid),
                rerun=rerun,
            )
            plan.checkpoint = report.checkpoint
            aside = report.set_aside.name if report.set_aside else "(missing)"
            notes.append(
                f"expresume: the checkpoint was corrupt ({plan.corruption}); it was set aside "
                f"as {aside} and rebuilt from {report.rebuilt_count} result files"
            )
        reconciled: dict[RunKey, RunStatus] = {}
        if plan.checkpoint is not None:
            reconciled = unrecorded_results(
                plan.experiment_dir,
                grid,
                plan.checkpoint.completed_runs,
                rerun,
                request.result_status,
            )
            plan.checkpoint.completed_runs.update(reconciled)
        skip: set[RunKey] = set()
        if plan.checkpoint is not None:
            skip = {
                key
                for key, status in plan.checkpoint.completed_runs.items()
                if status not in rerun and key in grid
            }
        plugin = cls(
            config,
            experiment_dir=plan.experiment_dir,
            experiment=plan.experiment,
            grid=grid,
            skip=skip,
            records=True,
            plan=plan,
            rerun=rerun,
        )
        plugin.reconciled = reconciled
        plugin.plan_notes = notes
        plugin.session_lock = lock
        return plugin

    @classmethod
    def from_handoff(cls, config: pytest.Config, data: dict[str, Any]) -> ExperimentPlugin:
        """An xdist worker's plugin, built from the controller's snapshot."""
        return cls(
            config,
            experiment_dir=Path(data["experiment_dir"]),
            experiment=orjson.loads(data["experiment"]),
            grid=Grid.from_json(data["grid"]),
            skip={RunKey(t, s, r) for t, s, r in data["skip"]},
            records=False,
        )

    def handoff(self) -> dict[str, Any]:
        """The snapshot every xdist worker gets, so all collect and deselect alike."""
        return {
            "experiment_dir": str(self.experiment_dir.resolve()),
            "experiment": orjson.dumps(self.experiment).decode(),
            "grid": self.grid.to_json(),
            "skip": [list(key) for key in self.skip],
        }

    def close(self) -> None:
        """Release files and restore the SIGTERM handler."""
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        if self.recorder is not None:
            self.recorder.store.close()
        if self.session_lock is not None:
            self.session_lock.release()

    # -- counts --

    def start_counts(self) -> MappingProxyType[str, int]:
        """Counts over the grid as the session began."""
        if self._start_counts is None:
            self._start_counts = self._count_start()
        return self._start_counts

    def _count_start(self) -> MappingProxyType[str, int]:
        checkpoint = self.plan.checkpoint if self.plan else None
        completed = checkpoint.completed_runs if checkpoint else {}
        counts = dict.fromkeys(("runs", "done", *RUN_STATUSES, "to_run"), 0)
        counts["runs"] = len(self.grid)
        for key, status in completed.items():
            if key in self.grid:
                counts[status] += 1
        counts["done"] = len(self.skip)
        counts["to_run"] = counts["runs"] - counts["done"]
        return MappingProxyType(counts)

    # -- hooks --

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.records and self.plan is not None:
            for line in self.plan.ignored:
                self.config.issue_config_time_warning(
                    ExpresumeWarning(f"expresume: --resume uses the saved config; {line}"),
                    stacklevel=2,
                )
            # SIGTERM (a scheduler's stop) ends the session as Ctrl+C does.
            if sys.platform != "win32" and _in_main_thread():
                self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        if not self.records or self.plan is None:
            return []
        plan = self.plan
        spec = plan.spec
        where = _relative(plan.experiment_dir)
        counts = self.start_counts()
        lines: list[str]
        if plan.mode == "new":
            lines = [
                f"expresume: starting {spec.experiment_id} at {where}: {counts['runs']} runs to run"
            ]
        elif counts["to_run"] == 0:
            lines = [
                f"expresume: resuming {spec.experiment_id} at {where}: "
                f"all {counts['runs']} runs done, nothing to run"
            ]
        else:
            lines = [
                f"expresume: resuming {spec.experiment_id} at {where}: "
                f"{counts['done']} of {counts['runs']} runs done, {counts['to_run']} to run"
            ]
        lines += self.plan_notes
        if self.reconciled:
            lines.append(
                f"expresume: reconciled {len(self.reconciled)} runs whose result files the "
                "checkpoint did not list"
            )
        lines += [f"expresume: ignored {line}" for line in plan.ignored]
        lines += [f"expresume: runtime key {line} (given value used)" for line in plan.replaced]
        if plan.checkpoint is not None and plan.checkpoint.status == "running":
            lines.append(
                "expresume: the checkpoint says 'running': an earlier session was killed "
                "before it could close the experiment (its recorded runs are kept)"
            )
        return lines

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if RUN_FIXTURE in metafunc.fixturenames:
            keys = list(self.keys_by_id.values())
            metafunc.parametrize(RUN_FIXTURE, keys, ids=list(self.keys_by_id), indirect=True)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        functions: dict[str, None] = {}
        selected: list[pytest.Item] = []
        deselected: list[pytest.Item] = []
        for item in items:
            key = _run_key_of(item)
            if key is None:
                selected.append(item)
                continue
            functions[item.nodeid.partition("[")[0]] = None
            if key in self.skip:
                deselected.append(item)
            else:
                selected.append(item)
                self.has_runs_to_record = True
        if len(functions) > 1:
            raise pytest.UsageError(
                f"expresume: only one test function may request {RUN_FIXTURE}; "
                f"found {' and '.join(functions)}"
            )
        if deselected:
            self.deselected_done = len(deselected)
            workeroutput: dict[str, Any] | None = getattr(config, "workeroutput", None)
            if workeroutput is not None:
                # xdist does not pass deselections on; the controller reports ours.
                workeroutput[DESELECTED] = [item.nodeid for item in deselected]
            config.hook.pytest_deselected(items=deselected)
            items[:] = selected

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        if not self.records or self.config.option.collectonly:
            return
        # In-process we know whether an experiment run was selected; the xdist
        # controller does not collect, so it prepares the experiment dir regardless.
        if self.has_runs_to_record or self.config.pluginmanager.hasplugin("dsession"):
            self._start_recording()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        key = _run_key_of(item)
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
        if report.when == "teardown":
            status = final_status(phases)
            report.expresume = {  # type: ignore[attr-defined]
                "tier": key.tier,
                "subtest": key.subtest,
                "run": key.run,
                "status": status,
                "message": item.stash.get(_message_key, None),
                "result": item.stash.get(_result_key, b"{}").decode(),
                "duration": item.stash.get(_duration_key, 0.0) + report.duration,
            }
            del item.stash[_phases_key]
        else:
            item.stash[_duration_key] = item.stash.get(_duration_key, 0.0) + report.duration
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.records or report.outcome == "rerun":  # type: ignore[comparison-overlap]
            return
        info: dict[str, Any] | None = getattr(report, "expresume", None)
        if report.when == "teardown" and info is not None:
            key = RunKey(info["tier"], info["subtest"], info["run"])
            status: RunStatus = info["status"]
            message = info["message"]
            result = info["result"].encode()
            duration = float(info["duration"])
        elif report.when == "???":  # type: ignore[comparison-overlap]
            # An xdist worker crashed in this run: the run did not finish.
            found = self.keys_by_id.get(report.nodeid.rpartition("[")[2].rstrip("]"))
            if found is None:
                return
            key, status, result, duration = found, "error", b"{}", report.duration
            message = short_message(str(report.longrepr) or "worker crashed") or "worker crashed"
        else:
            return
        if self.recorder is None:
            self._start_recording()
        assert self.recorder is not None
        self.recorder.record(
            key,
            status,
            nodeid=report.nodeid,
            duration_seconds=duration,
            result_json=result,
            message=message,
        )

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.records:
            return
        if (
            self.recorder is None
            and self.reconciled
            and exitstatus != pytest.ExitCode.USAGE_ERROR
            and not self.config.option.collectonly
        ):
            self._start_recording()  # nothing ran, but the reconciled runs are kept
        if self.recorder is not None:
            store = self.recorder.store
            checkpoint = store.load()
            store.set_status("completed" if self._grid_complete(checkpoint) else "interrupted")
            self.final = store.compact()
        if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and (
            self.deselected_done or self.start_counts()["to_run"] == 0
        ):
            # Everything asked for is done already: that is a success, not "no tests".
            session.exitstatus = pytest.ExitCode.OK

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records or self.plan is None:
            return
        checkpoint = self.final or self.plan.checkpoint
        completed = checkpoint.completed_runs if checkpoint else {}
        session = self.recorder.session_counts if self.recorder else None
        tr = terminalreporter
        tr.write_sep("=", f"expresume: {self.plan.spec.experiment_id}")
        for line in session_summary(self.grid, completed, session or Counter(), self.rerun):
            tr.write_line(line)
        status_text = checkpoint.status if checkpoint else "not started"
        tr.write_line(
            f"counts: total (+ this session); experiment {status_text} at "
            f"{_relative(self.experiment_dir)}"
        )
        if self.recorder is None and self.start_counts()["to_run"] == 0:
            tr.write_line(f"expresume: all {len(self.grid)} runs are done; nothing to run")

    # -- internals --

    def _grid_complete(self, checkpoint: Checkpoint) -> bool:
        """Every run of the grid has a final status outside ``--rerun``."""
        completed = checkpoint.completed_runs
        return all(completed.get(key, "") not in ("", *self.rerun) for key in self.grid)

    def _start_recording(self) -> None:
        if self.recorder is not None or self.plan is None:
            return
        plan = self.plan
        fsync = bool(self.config.getini("expresume_fsync"))
        plan.experiment_dir.mkdir(parents=True, exist_ok=True)
        if self.session_lock is None:
            self.session_lock = SessionLock(plan.experiment_dir)
        self.session_lock.acquire()  # a new dir: nobody else can hold it
        remove_stale_temp_files(plan.experiment_dir)
        if plan.save_config:
            save_config(plan.experiment_dir, plan.experiment, fsync=fsync)
        store = CheckpointStore(plan.experiment_dir, fsync=fsync, fsync_journal=False)
        store.create(
            plan.checkpoint
            or Checkpoint(
                experiment_id=plan.spec.experiment_id,
                experiment_dir=str(plan.experiment_dir.resolve()),
                config_hash=plan.config_hash,
            )
        )
        store.load()
        for key, status in self.reconciled.items():
            store.record(key, status)
        store.set_status("running")
        hook = self.config.hook

        def on_recorded(record: RunRecord) -> None:
            hook.pytest_expresume_run_recorded(config=self.config, record=record)

        self.recorder = RunRecorder(store, fsync=fsync, on_recorded=on_recorded)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _run_key_of(item: pytest.Item) -> RunKey | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    key = callspec.params.get(RUN_FIXTURE)
    return key if isinstance(key, RunKey) else None
