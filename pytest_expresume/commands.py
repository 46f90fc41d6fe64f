"""``--rebuild-checkpoint`` and ``--experiment-status``: commands that run no tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .config import ConfigError
from .opening import repair_checkpoint
from .options import grid_of_dir, plan_request, session_settings
from .planning import existing_experiment_dir
from .rebuild import recover_checkpoint
from .report_html import write_report
from .results import export_results, tier_figures
from .session_lock import ExperimentBusy, SessionLock
from .status_report import experiment_status, figure_lines


def run_command(
    config: pytest.Config,
    *,
    rebuild: bool,
    status: bool,
    export: str | None = None,
    report_to: str | None = None,
) -> int | None:
    """``--rebuild-checkpoint``, ``--experiment-status``, ``--experiment-export`` and
    ``--experiment-report``: no test session."""
    export_path = _output_path(config, export, (".csv", ".jsonl"), "--experiment-export")
    report_path = _output_path(config, report_to, (".html", ".htm"), "--experiment-report")
    request = plan_request(config)
    target = existing_experiment_dir(request)
    settings = session_settings(config)
    grid = grid_of_dir(config, target, request.given)
    if rebuild:
        lock = SessionLock(target)
        try:
            lock.acquire()
            report = repair_checkpoint(target, grid, settings)
        except ExperimentBusy as exc:
            raise ConfigError(str(exc)) from None
        except OSError as exc:
            raise ConfigError(
                f"cannot rebuild the checkpoint of {target}: {exc.strerror or exc} "
                f"({exc.filename}); the checkpoint is left as it was"
            ) from None
        finally:
            lock.release()
        print("\n".join(report.lines()), flush=True)
        if config.getoption("expresume_resume") and not status:
            return None  # go on: resume with the rebuilt checkpoint
    if status:
        checkpoint, corruption = recover_checkpoint(target, result_status=settings.result_status)
        shown = experiment_status(target, checkpoint, grid)
        if corruption:
            shown.notes.append(
                f"note: the checkpoint cannot be read ({corruption}); counts are rebuilt "
                "from the result files (run --rebuild-checkpoint to repair it)"
            )
        if grid is None:
            shown.notes.append("note: no config to read the grid from: runs and pending unknown")
        figures = tier_figures(
            target, _cost_key(config), result_status=settings.result_status, grid=grid
        )
        lines = shown.lines()
        lines[len(shown.tiers) + 3 : len(shown.tiers) + 3] = [
            "",
            *figure_lines(shown.tiers, shown.total, figures),
            "",
        ]
        print("\n".join(lines), flush=True)
    if export_path is not None:
        written = export_results(target, export_path, result_status=settings.result_status)
        print(f"expresume: wrote {written} runs of {target} to {export_path}", flush=True)
    if report_path is not None:
        checkpoint, _ = recover_checkpoint(target, result_status=settings.result_status)
        write_report(
            target,
            report_path,
            checkpoint=checkpoint,
            grid=grid,
            cost_key=_cost_key(config),
            result_status=settings.result_status,
        )
        print(f"expresume: wrote the report of {target} to {report_path}", flush=True)
    return 0


def _cost_key(config: pytest.Config) -> str:
    return str(config.getini("expresume_cost_key")).strip() or "cost_usd"


def _output_path(
    config: pytest.Config, value: str | None, suffixes: tuple[str, ...], option: str
) -> Path | None:
    """Where a command writes, checked before anything is read: a known suffix and a
    directory that exists."""
    if value is None:
        return None
    path = Path(config.invocation_params.dir, value)
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{option} {value}: the file name must end in {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise ConfigError(f"{option} {value}: the directory {path.parent} does not exist")
    return path
