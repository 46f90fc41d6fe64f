"""The plugin's command-line and ini options, and what a session's options ask for."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from .config import ConfigError, ExperimentSpec, load_config_file, parse_set_option, validate
from .grid import Grid, build_grid
from .layout import load_saved_config
from .opening import SessionSettings
from .planning import PlanRequest
from .scanner import ResultStatus
from .statuses import RUN_STATUSES
from .steps import StepError, check_step_name


def add_options(parser: pytest.Parser) -> None:
    """The command-line and ini options of the plugin."""
    group = parser.getgroup("expresume", "resumable experiment grids (pytest-expresume)")
    group.addoption(
        "--experiment",
        dest="expresume_experiment",
        metavar="FILE",
        help="experiment config file (JSON) of a new experiment",
    )
    group.addoption(
        "--experiment-set",
        dest="expresume_set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a config key (VALUE parsed as JSON, else a string); repeatable",
    )
    group.addoption(
        "--experiment-dir",
        dest="expresume_dir",
        metavar="DIR",
        help="the experiment dir to resume (default: the newest for the experiment_id)",
    )
    group.addoption(
        "--results-root",
        dest="expresume_results_root",
        metavar="DIR",
        help="where experiment dirs live (default: results/ under the rootdir)",
    )
    group.addoption(
        "--resume",
        dest="expresume_resume",
        action="store_true",
        help="resume the newest experiment dir; its saved config wins over the given one",
    )
    group.addoption(
        "--fresh",
        dest="expresume_fresh",
        action="store_true",
        help="start a new experiment dir (older dirs are left as they are)",
    )
    group.addoption(
        "--rebuild-checkpoint",
        dest="expresume_rebuild",
        action="store_true",
        help="rebuild the checkpoint from the result files (backed up first), then exit; "
        "with --resume, go on and resume",
    )
    group.addoption(
        "--experiment-status",
        dest="expresume_status",
        action="store_true",
        help="print the experiment's counts per tier and its state, then exit",
    )
    group.addoption(
        "--experiment-export",
        dest="expresume_export",
        metavar="FILE",
        help="write every run's current result to FILE (.csv or .jsonl), then exit",
    )
    group.addoption(
        "--experiment-report",
        dest="expresume_report",
        metavar="FILE",
        help="write a self-contained HTML report of the experiment to FILE, then exit",
    )
    group.addoption(
        "--rerun",
        dest="expresume_rerun",
        default="error",
        metavar="STATUS[,STATUS]",
        help="recorded statuses to run again on resume (default: error)",
    )
    group.addoption(
        "--from-step",
        dest="expresume_from_step",
        metavar="NAME",
        help="reuse the steps before NAME of runs that run again; run NAME and every later step",
    )
    group.addoption(
        "--until-step",
        dest="expresume_until_step",
        metavar="NAME",
        help="stop each run after its step NAME (not recorded: a later session goes on)",
    )
    group.addoption(
        "--max-errors",
        dest="expresume_max_errors",
        type=int,
        metavar="N",
        help="stop the session after N runs in a row end in error (0: never; "
        "default: ini expresume_max_errors, else 10)",
    )
    parser.addini(
        "expresume_max_errors",
        "stop the session after this many runs in a row end in error (0: never)",
        default="10",
    )
    parser.addini(
        "expresume_max_pause",
        "longest rate-limit pause in seconds; a longer one records the run error and stops",
        default="3600",
    )
    parser.addini(
        "expresume_cost_key",
        "the result key whose numbers --experiment-status and the report sum as cost",
        default="cost_usd",
    )
    parser.addini("expresume_config", "experiment config file (JSON), relative to the ini file")
    parser.addini("expresume_results_root", "where experiment dirs live, relative to the ini file")
    parser.addini(
        "expresume_fsync",
        "fsync result files and checkpoint records (false trades power-loss safety for speed)",
        type="bool",
        default=True,
    )


def parse_rerun(text: str) -> frozenset[str]:
    """``--rerun error,failed`` as a set of statuses; an unknown one is a ConfigError."""
    statuses = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(statuses - set(RUN_STATUSES))
    if unknown:
        raise ConfigError(
            f"--rerun {text!r} names {', '.join(unknown)}; allowed: {', '.join(RUN_STATUSES)}"
        )
    return statuses


def session_settings(config: pytest.Config) -> SessionSettings:
    """``--rerun``, the step and error options, ini ``expresume_fsync``, the result-status
    hook and ``--collect-only``."""
    max_errors = config.getoption("expresume_max_errors")
    if max_errors is None:
        raw = str(config.getini("expresume_max_errors")).strip()
        if not raw.isdigit():
            raise ConfigError(f"ini expresume_max_errors = {raw!r} is not a count (0: never)")
        max_errors = int(raw)
    elif max_errors < 0:
        raise ConfigError(f"--max-errors {max_errors} is negative; 0 turns the limit off")
    return SessionSettings(
        rerun=parse_rerun(config.getoption("expresume_rerun")),
        fsync=bool(config.getini("expresume_fsync")),
        result_status=result_status_hook(config),
        collect_only=bool(config.getoption("collectonly")),
        from_step=_step_option(config, "expresume_from_step", "--from-step"),
        until_step=_step_option(config, "expresume_until_step", "--until-step"),
        max_errors=max_errors,
        max_pause=_ini_number(config, "expresume_max_pause"),
    )


def _step_option(config: pytest.Config, dest: str, option: str) -> str | None:
    value: str | None = config.getoption(dest)
    if value is not None:
        try:
            check_step_name(value)
        except StepError as exc:
            raise ConfigError(f"{option}: {exc}") from None
    return value


def _ini_number(config: pytest.Config, name: str) -> float:
    raw = str(config.getini(name)).strip()
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"ini {name} = {raw!r} is not a number of 0 or more")
    return value


def _ini_base(config: pytest.Config) -> Path:
    return config.inipath.parent if config.inipath is not None else config.rootpath


def results_root(config: pytest.Config) -> Path:
    """``--results-root``, else the ini option, else ``results/`` under the rootdir."""
    option = config.getoption("expresume_results_root")
    if option:
        root = Path(config.invocation_params.dir, option)
    elif config.getini("expresume_results_root"):
        root = _ini_base(config) / str(config.getini("expresume_results_root"))
    else:
        root = config.rootpath / "results"
    if root.exists() and not root.is_dir():
        raise ConfigError(f"the results root {root} is not a directory")
    return root


def plan_request(config: pytest.Config, given: Any = False) -> PlanRequest:
    """What this session asks for (``given`` when the config was read already)."""
    experiment_dir = config.getoption("expresume_dir")
    return PlanRequest(
        given=given_config(config) if given is False else given,
        results_root=results_root(config),
        resume=bool(config.getoption("expresume_resume")),
        fresh=bool(config.getoption("expresume_fresh")),
        experiment_dir=Path(config.invocation_params.dir, experiment_dir)
        if experiment_dir
        else None,
        result_status=result_status_hook(config),
    )


def result_status_hook(config: pytest.Config) -> ResultStatus:
    """The hook ``pytest_expresume_result_status`` as a plain callable."""

    def result_status(result: dict[str, Any], path: Path) -> str | None:
        answer: str | None = config.hook.pytest_expresume_result_status(result=result, path=path)
        return answer

    return result_status


def grid_of_dir(config: pytest.Config, target: Path, given: dict[str, Any] | None) -> Grid | None:
    """The grid of an existing experiment: its saved config, else the given one."""
    experiment = load_saved_config(target) or given
    if experiment is None:
        return None
    try:
        return grid_for(config, validate(experiment), experiment)
    except ConfigError:
        return None


def given_config(config: pytest.Config) -> dict[str, Any] | None:
    """The config given this session: file, then --experiment-set, then the hook."""
    experiment: dict[str, Any] = {}
    sourced = False
    path_option = config.getoption("expresume_experiment")
    ini_path = config.getini("expresume_config")
    if path_option:
        experiment = load_config_file(Path(config.invocation_params.dir, path_option))
        sourced = True
    elif ini_path:
        experiment = load_config_file(_ini_base(config) / str(ini_path))
        sourced = True
    for text in config.getoption("expresume_set"):
        key, value = parse_set_option(text)
        experiment[key] = value
        sourced = True
    config.hook.pytest_expresume_configure(config=config, experiment=experiment)
    if not sourced and not experiment:
        return None
    return experiment


def grid_for(config: pytest.Config, spec: ExperimentSpec, experiment: dict[str, Any]) -> Grid:
    """The grid of a config, subtests from the hook where the config has none."""

    def from_hook(tier: str) -> list[str] | None:
        names = config.hook.pytest_expresume_subtests(
            config=config, experiment=experiment, tier=tier
        )
        return None if names is None else list(names)

    return build_grid(spec, from_hook)


def grid_maker(config: pytest.Config) -> Callable[[Mapping[str, Any]], Grid]:
    """The grid of any config of this session's experiment (to tell a grid change in runs)."""

    def grid_of(experiment: Mapping[str, Any]) -> Grid:
        return grid_for(config, validate(experiment), dict(experiment))

    return grid_of
