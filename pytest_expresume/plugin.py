"""The pytest entry point: options, commands, fixtures, and the plugins of an active
experiment, registered only when one is given.

Which plugins a process gets depends on its role, decided once here:

- every process that runs tests gets :class:`~.grid_plugin.GridPlugin` (the grid as items,
  done runs deselected) and :class:`~.run_reports.RunReportPlugin` (each run's outcome
  worked out, its result file written, the finished run handed on in its last report);
- the process that records (in-process, or the xdist controller) gets
  :class:`~.recording_plugin.RecordingPlugin`, and under xdist
  :class:`~.xdist_handoff.XdistController`; an xdist worker gets
  :class:`~.xdist_handoff.XdistWorker`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from . import hookspecs
from .commands import run_command
from .config import ConfigError
from .grid import RunKey
from .grid_plugin import EXPERIMENT_FIXTURE, RUN_FIXTURE, GridPlugin
from .layout import prepare_run_dir
from .opening import OpenedExperiment, open_experiment
from .options import (
    add_options,
    given_config,
    grid_for,
    grid_maker,
    plan_request,
    session_settings,
)
from .path_arguments import check_path_options
from .path_probe import describe_os_error, probe_experiment_dir, probe_new_experiment_dir
from .planning import plan_session
from .recording_plugin import RecordingPlugin
from .run_context import ExperimentInfo, ExpresumeWarning, RunContext
from .run_reports import RunReportPlugin, context_key, result_key
from .snapshot import ExperimentSnapshot
from .steps import StepBook, reusable_attempt
from .values import Conversion, encode_run_result
from .xdist_handoff import HANDOFF, XdistController, XdistWorker, distributes, worker_snapshot

snapshot_key = pytest.StashKey[ExperimentSnapshot]()
recording_key = pytest.StashKey[RecordingPlugin]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    rebuild = bool(config.getoption("expresume_rebuild"))
    status = bool(config.getoption("expresume_status"))
    export = config.getoption("expresume_export")
    report = config.getoption("expresume_report")
    try:
        check_path_options(config)
        if not rebuild and not status and export is None and report is None:
            return None
        return run_command(config, rebuild=rebuild, status=status, export=export, report_to=report)
    except ConfigError as exc:
        raise pytest.UsageError(f"expresume: {exc}") from None
    except OSError as exc:  # an unreadable checkpoint, a dir that cannot be listed
        raise pytest.UsageError(
            f"expresume: {describe_os_error(exc, 'read the experiment')}"
        ) from None


def _open(config: pytest.Config) -> OpenedExperiment | None:
    """The experiment this session asks for, opened; None when it asks for none."""
    given = given_config(config)
    if (
        given is None
        and config.getoption("expresume_dir") is None
        and not config.getoption("expresume_resume")
        and not config.getoption("expresume_fresh")
    ):
        return None
    settings = session_settings(config)
    try:
        plan = plan_session(plan_request(config, given), datetime.now(timezone.utc))
        if not settings.collect_only:
            if plan.mode == "new":
                probe_new_experiment_dir(plan.experiment_dir)
            else:
                probe_experiment_dir(plan.experiment_dir, plan.spec.tiers)
        grid = grid_for(config, plan.spec, plan.experiment)
        return open_experiment(plan, grid, settings, grid_maker(config))
    except OSError as exc:  # before any run: the path and the OS's reason, no traceback
        raise ConfigError(describe_os_error(exc, "open the experiment")) from None


def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        if HANDOFF in workerinput:
            snapshot = worker_snapshot(workerinput[HANDOFF])
            config.stash[snapshot_key] = snapshot
            worker = XdistWorker(workerinput[HANDOFF])
            reports = RunReportPlugin(config, snapshot, recorder_alive=worker.controller_alive)
            grid = GridPlugin(config, snapshot, on_worker=True)
            config.pluginmanager.register(grid, "expresume-grid")
            config.pluginmanager.register(reports, "expresume-run-reports")
            config.pluginmanager.register(worker, "expresume-xdist")
        return
    try:
        opened = _open(config)
    except ConfigError as exc:
        raise pytest.UsageError(f"expresume: {exc}") from None
    if opened is None:
        return
    snapshot = ExperimentSnapshot.of(opened)
    recording = RecordingPlugin(config, opened)
    config.stash[snapshot_key] = snapshot
    config.stash[recording_key] = recording
    config.pluginmanager.register(GridPlugin(config, snapshot), "expresume-grid")
    config.pluginmanager.register(RunReportPlugin(config, snapshot), "expresume-run-reports")
    config.pluginmanager.register(recording, "expresume-recording")
    if distributes(config):
        config.pluginmanager.register(XdistController(recording, snapshot), "expresume-xdist")


def pytest_unconfigure(config: pytest.Config) -> None:
    recording = config.stash.get(recording_key, None)
    if recording is not None:
        recording.close()
        del config.stash[recording_key]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if snapshot_key in config.stash:
        return
    for item in items:
        requested = getattr(item, "fixturenames", ())
        for fixture in (RUN_FIXTURE, EXPERIMENT_FIXTURE):
            if fixture in requested:
                raise pytest.UsageError(
                    f"expresume: {item.nodeid} requests {fixture} but no "
                    "experiment config is given: use --experiment=FILE, the ini option "
                    "expresume_config, --experiment-set KEY=VALUE or --experiment-dir=DIR"
                )


def _snapshot(request: pytest.FixtureRequest) -> ExperimentSnapshot:
    snapshot = request.config.stash.get(snapshot_key, None)
    if snapshot is None:
        # Only a fixture asked for at run time (getfixturevalue) gets here: collection
        # refuses a test that requests it without an experiment.
        pytest.fail(
            f"expresume: the fixture {request.fixturename!r} needs an experiment config",
            pytrace=False,
        )
    return snapshot


@pytest.fixture
def experiment_run(request: pytest.FixtureRequest) -> Iterator[RunContext]:
    """One run of the experiment grid; the test fills ``result``."""
    snapshot = _snapshot(request)
    key = getattr(request, "param", None)
    if not isinstance(key, RunKey):
        pytest.fail(
            f"expresume: {RUN_FIXTURE!r} can only be requested by the test function "
            "(it is parametrized over the grid), not looked up at run time",
            pytrace=False,
        )
    run_dir = prepare_run_dir(snapshot.experiment_dir, key, fsync=snapshot.fsync)
    steps = StepBook(
        run_dir,
        reusable_attempt(snapshot.experiment_dir, key),
        from_step=snapshot.from_step,
        until_step=snapshot.until_step,
        fsync=snapshot.fsync,
    )
    context = RunContext(
        tier=key.tier,
        subtest=key.subtest,
        run=key.run,
        dir=run_dir,
        config=snapshot.config,
        steps=steps,
    )
    request.node.stash[context_key] = context
    yield context
    encoded, refused = encode_run_result(context.result)
    encoded.conversions.extend(
        Conversion(f"steps.{c.path}", c.was, c.saved_as) for c in steps.conversions
    )
    request.node.stash[result_key] = encoded
    if encoded.conversions:
        # Located at the test, so the warnings summary shows it under the run's node id.
        listed = "; ".join(f"{c.path}: {c.was} -> {c.saved_as}" for c in encoded.conversions)
        with warnings.catch_warnings():
            # Shown, never raised (``-W error``): the run's status is what the test said.
            warnings.simplefilter("always", ExpresumeWarning)
            warnings.warn_explicit(
                ExpresumeWarning(
                    f"expresume: {key.test_id}: {len(encoded.conversions)} values of the result "
                    f"were saved converted (JSON cannot hold them): {listed}"
                ),
                None,
                str(request.node.path),
                (request.node.location[1] or 0) + 1,
            )
    if refused is not None:
        # After the result is stashed: the run is an error, and the paid-for values are saved.
        raise ValueError(
            "experiment_run.result may not use the key 'expresume' (the plugin's): "
            f"its value is saved under {refused!r}"
        )


@pytest.fixture(scope="session")
def experiment(request: pytest.FixtureRequest) -> ExperimentInfo:
    """The experiment of this session: config, dir and counts at session start."""
    snapshot = _snapshot(request)
    return ExperimentInfo(snapshot.config, snapshot.experiment_dir, snapshot.counts)
