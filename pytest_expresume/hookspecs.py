"""Hooks that conftests and plugins implement to shape and follow an experiment.

Three hooks are called while pytest configures itself (``pytest_configure``, or
``pytest_cmdline_main`` for ``--rebuild-checkpoint`` and ``--experiment-status``), before
any test file is collected: only plugins and *initial* conftests (the ``conftest.py`` of
the rootdir and of the paths given on the command line, or ``testpaths``) can implement
them. ``pytest_expresume_run_recorded`` and ``pytest_expresume_run_status`` are called
while tests run: any conftest can implement them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .recording import RunRecord


@pytest.hookspec()
def pytest_expresume_configure(config: pytest.Config, experiment: dict[str, Any]) -> None:
    """Adjust a session's given experiment config dict in place (e.g. fold in own options).

    :param config: The pytest config.
    :param experiment: The config built from ``--experiment``/``expresume_config`` and
        ``--experiment-set`` (empty when none is given); changes to it are what counts.

    Only plugins and initial conftests can implement this hook (called at configure time).
    """


@pytest.hookspec(firstresult=True)
def pytest_expresume_subtests(
    config: pytest.Config, experiment: dict[str, Any], tier: str
) -> Sequence[str] | None:
    """Return the subtest names of ``tier`` when the config does not list them.

    :param config: The pytest config.
    :param experiment: The authoritative experiment config (read it, do not change it).
    :param tier: The tier's name.

    Stops at the first non-None result. Only plugins and initial conftests can implement
    this hook (called at configure time).
    """


@pytest.hookspec(firstresult=True)
def pytest_expresume_result_status(result: dict[str, Any], path: Path) -> str | None:
    """Return the status of a result file another tool wrote, or None if unknown.

    :param result: The file's JSON object.
    :param path: Where the file is (``<tier>/<subtest>/run_<NN>/run_result.json``).

    Asked by ``--rebuild-checkpoint``, ``--experiment-status`` and every resume's
    reconciliation, for files without ``expresume.status``. Stops at the first non-None
    result: ``passed``, ``failed``, ``error`` or ``skipped``. Only plugins and initial
    conftests can implement this hook (called at configure time).
    """


@pytest.hookspec()
def pytest_expresume_run_recorded(config: pytest.Config, record: RunRecord) -> None:
    """Called after each run is recorded: its result file is written, then its status.

    :param config: The pytest config (of the recording process: in-process, or the xdist
        controller).
    :param record: What was recorded (key, status, nodeid, duration_seconds,
        finished_at, message, result_path).

    Any conftest can implement this hook.
    """


@pytest.hookspec(firstresult=True)
def pytest_expresume_run_status(
    config: pytest.Config,
    item: pytest.Item,
    report: pytest.TestReport | None,
    excinfo: pytest.ExceptionInfo[BaseException] | None,
) -> str | None:
    """Return the status one phase of a run decides (where a suite classifies its own
    exceptions, say a provider's ``APITimeoutError`` as ``error``), or None for the default.

    :param config: The pytest config (of the process that runs the test).
    :param item: The experiment test item of the run.
    :param report: The phase's report (``report.when``: setup, call or teardown); None
        for a call that a retry plugin (pytest-retry) ran again in place, with no report.
    :param excinfo: What the phase raised, or None.

    The answer is the phase's status: ``passed``, ``failed``, ``error`` or ``skipped``; a
    teardown ``error`` still wins over the call's verdict. Stops at the first non-None
    result. Any conftest can implement this hook.
    """


@pytest.hookspec(firstresult=True)
def pytest_expresume_rate_limit(config: pytest.Config, exc: BaseException) -> float | None:
    """Return how many seconds to pause the experiment for ``exc`` (a provider's own
    rate-limit exception), or None when it is not a rate limit.

    :param config: The pytest config (of the process that runs the test).
    :param exc: What a run's call raised (``RateLimited`` is handled without this hook).

    A number pauses the experiment as ``RateLimited(retry_after=...)`` does: the attempt
    is not recorded and the run is tried again after the pause, its finished steps
    reused; the pause's source is the exception's type name. Stops at the first non-None
    result. Any conftest can implement this hook.
    """
