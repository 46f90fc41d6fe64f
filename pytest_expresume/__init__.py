"""pytest-expresume: long, expensive experiment grids as resumable pytest tests."""

from __future__ import annotations

from .config import ConfigError, ExperimentSpec, config_hash
from .grid import Grid, RunKey
from .plugin import ExperimentInfo, ExpresumeWarning, RunContext
from .recording import RunRecord
from .store import Checkpoint, CheckpointError, CheckpointStore

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "ConfigError",
    "ExperimentInfo",
    "ExperimentSpec",
    "ExpresumeWarning",
    "Grid",
    "RunContext",
    "RunKey",
    "RunRecord",
    "config_hash",
]
