"""``--rebuild-checkpoint`` and ``--experiment-status``: commands that run no tests."""

from __future__ import annotations

import pytest

from .config import ConfigError
from .opening import repair_checkpoint
from .options import grid_of_dir, plan_request, session_settings
from .planning import existing_experiment_dir
from .rebuild import recover_checkpoint
from .session_lock import ExperimentBusy, SessionLock
from .status_report import experiment_status


def run_command(config: pytest.Config, *, rebuild: bool, status: bool) -> int | None:
    """``--rebuild-checkpoint`` and ``--experiment-status``: no test session."""
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
        print("\n".join(shown.lines()), flush=True)
    return 0
