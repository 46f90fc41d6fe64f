"""pytest-expresume: long, expensive experiment grids as resumable pytest tests."""

from __future__ import annotations

from pathlib import Path

from .config import ConfigError, ExperimentSpec, config_hash
from .grid import Grid, RunKey
from .rate_limits import RateLimited
from .rebuild import RebuildReport, rebuild_checkpoint
from .recording import RunRecord
from .results import RunResult, iter_results, load_results, results_frame
from .run_context import ExperimentInfo, ExpresumeWarning, RunContext
from .status_report import ExperimentStatus, read_experiment_status
from .store import Checkpoint, CheckpointError, CheckpointStore


def load_checkpoint(experiment_dir: Path) -> Checkpoint:
    """The newest state of an experiment's checkpoint (snapshot plus journal); reads only."""
    with CheckpointStore(Path(experiment_dir)) as store:
        return store.load()


__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "ConfigError",
    "ExperimentInfo",
    "ExperimentSpec",
    "ExperimentStatus",
    "ExpresumeWarning",
    "Grid",
    "RateLimited",
    "RebuildReport",
    "RunContext",
    "RunKey",
    "RunRecord",
    "RunResult",
    "config_hash",
    "iter_results",
    "load_checkpoint",
    "load_results",
    "read_experiment_status",
    "rebuild_checkpoint",
    "results_frame",
]
